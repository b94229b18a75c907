"""Serving a call's params to the worker: order, shuffles and provide-data frames.

What a worker asks for is checked here (``check_request``); the work it causes stays bounded
and off the event loop: a shuffle permutes in a thread, and an answer yields to the loop every
few elements and gives up when the worker stops reading (``WriteStalled``).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field

import numpy as np

from launcher.params import ParamSource
from launcher.worker.frames import ProtocolViolation
from runtime import messages, protocol

CHUNK = 1 << 20
#: An answer yields to the event loop after this many elements.
YIELD_EVERY = 128


class WriteStalled(ProtocolViolation):
    """The worker stopped reading: a write stayed blocked past its deadline."""


@dataclass
class ServedParam:
    """A param as the worker sees it: a source plus the current (possibly shuffled) order.

    ``order`` is replaced, never changed in place, so an answer keeps the order its request saw.
    """

    source: ParamSource
    order: np.ndarray | None = None  # None: physical order


@dataclass(frozen=True)
class Reply:
    """One checked ``requestData``: what to send, in the order seen when it was asked."""

    request_id: int
    source: ParamSource
    order: np.ndarray | None
    start: int
    count: int


@dataclass
class DataServer:
    """The params of one call, by the dataset names given to the worker."""

    params: dict[str, ServedParam] = field(default_factory=dict)
    rng: np.random.Generator = field(default_factory=np.random.default_rng)

    def add(self, name: str, dataset: str, source: ParamSource) -> messages.ParamHandle:
        """Register a source; returns the handle the worker reads it through."""
        self.params[dataset] = ServedParam(source)
        return messages.ParamHandle(name, dataset, source.amount, source.total_byte_size)

    def check_shuffle(self, event: messages.Shuffle) -> list[ServedParam]:
        """The params a shuffle names (each once), refused unless known and of equal amounts."""
        served: dict[str, ServedParam] = {}
        for name in event.datasets:
            if name not in self.params:
                raise ProtocolViolation(f"shuffle of an unknown dataset {messages.shown(name)}")
            served[name] = self.params[name]
        amounts = {p.source.amount for p in served.values()}
        if len(amounts) != 1:
            raise ProtocolViolation("shuffle of datasets with different amounts")
        return list(served.values())

    def shuffle(self, served: list[ServedParam]) -> None:
        """Apply one shared random permutation (O(amount); run it off the event loop)."""
        perm = self.rng.permutation(served[0].source.amount)
        for p in served:
            p.order = perm if p.order is None else p.order[perm]

    def check_request(self, event: messages.RequestData) -> Reply:
        """A requestData checked against its dataset; the answer holds at most what exists."""
        param = self.params.get(event.dataset)
        if param is None:
            raise ProtocolViolation(
                f"requestData for an unknown dataset {messages.shown(event.dataset)}"
            )
        size = param.source.amount
        if not event.start_index < max(size, 1):
            raise ProtocolViolation(
                f"requestData: startIndex {event.start_index} outside 0..{size}"
            )
        count = max(0, min(event.amount, size - event.start_index))
        return Reply(event.request_id, param.source, param.order, event.start_index, count)


async def drain(writer: asyncio.StreamWriter, deadline: float) -> None:
    """Wait until the worker has taken what was written, at most ``deadline`` seconds."""
    try:
        async with asyncio.timeout(deadline):
            await writer.drain()
    except TimeoutError:
        raise WriteStalled(
            f"the worker stopped reading: a write stayed blocked for over {deadline:g} s"
        ) from None


async def send_elements(writer: asyncio.StreamWriter, reply: Reply, deadline: float) -> None:
    """Write one provide-data frame, streaming each element from its file."""
    src = reply.source
    writer.write(messages.ProvideData.header(reply.request_id, reply.count))
    for n, i in enumerate(range(reply.start, reply.start + reply.count)):
        j = i if reply.order is None else int(reply.order[i])
        offset, length = int(src.offsets[j]), int(src.lengths[j])
        writer.write(protocol.blob_header(length))
        while length:
            data = os.pread(src.fd, min(length, CHUNK), offset)
            if not data:
                raise OSError(f"param {src.name!r}: its file ended early")
            writer.write(data)
            offset += len(data)
            length -= len(data)
            await drain(writer, deadline)
        if n % YIELD_EVERY == YIELD_EVERY - 1:
            await drain(writer, deadline)
            await asyncio.sleep(0)  # other sessions' turn
    await drain(writer, deadline)
