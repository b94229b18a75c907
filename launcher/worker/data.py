"""Serving a call's params to the worker: order, shuffles and provide-data frames.

What a worker asks for is checked here (``check_request``); the work it causes stays bounded
and off the event loop: a shuffle permutes in a thread, and an answer yields to the loop every
few elements and gives up when the worker stops reading (``WriteStalled``).

A large element goes from its file to the socket with ``sendfile`` (``loop.sendfile``: the
kernel copies it, nothing passes through Python), a ``CHUNK`` at a time, each under the same
write deadline as a written chunk; the worker receives the same bytes either way. Where the
transport or the file cannot (``SendfileNotAvailableError``, a transport without sendfile),
the element is read and written as before. Before its first large element the launcher's end
of the socket gets a ``SEND_BUFFER`` send buffer (the kernel's default, about 200 KiB, woke the
worker every few hundred KiB: a 256 MiB element took 2.7 times as long to arrive).
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass, field
from typing import IO, cast

import numpy as np

from launcher.params import ParamSource
from launcher.worker.frames import ProtocolViolation
from runtime import messages, protocol

CHUNK = 1 << 20
#: Elements of at least this many bytes are sent with sendfile (smaller ones are read: one
#: syscall each, where sendfile would cost a wait for the transport's buffer to empty).
SENDFILE_MIN = 256 << 10
#: The send buffer (SO_SNDBUF, which Linux doubles) of the launcher's end of a worker socket
#: that is sent a large element: kernel memory, at most this much per worker socket.
SEND_BUFFER = 512 << 10
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


class _FileOf:
    """What ``loop.sendfile`` asks of a file object, for a descriptor it does not own (the
    native path sends at explicit offsets; it only moves the file position, which no reader
    of a source uses: they all read at offsets)."""

    mode = "rb"

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd


def _widen_send_buffer(writer: asyncio.StreamWriter) -> None:
    sock = writer.transport.get_extra_info("socket")
    if sock is None:
        return
    try:
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) < SEND_BUFFER:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    except OSError:
        pass  # a socket without the option: the default buffer does


async def _sendfile(
    writer: asyncio.StreamWriter, src: ParamSource, offset: int, length: int, deadline: float
) -> int:
    """Send ``length`` bytes at ``offset`` of the source's file with sendfile, a CHUNK at a
    time, each within ``deadline`` (a stall is ``WriteStalled``, as for a written chunk); the
    bytes sent, fewer where sendfile is not available here (the caller sends the rest)."""
    loop = asyncio.get_running_loop()
    _widen_send_buffer(writer)
    file = cast(IO[bytes], _FileOf(src.fd))
    sent = 0
    while sent < length:
        count = min(length - sent, CHUNK)
        try:
            async with asyncio.timeout(deadline):
                # Waits for the transport's buffer to empty (the blob header), then sends.
                n = await loop.sendfile(
                    writer.transport, file, offset + sent, count, fallback=False
                )
        except TimeoutError:
            raise WriteStalled(
                f"the worker stopped reading: a write stayed blocked for over {deadline:g} s"
            ) from None
        except (asyncio.SendfileNotAvailableError, NotImplementedError, RuntimeError):
            # Not here (this transport or file, or a closing transport): the rest is read
            # and written, with that path's errors.
            return sent
        sent += n
        if n < count:
            return sent  # the file ended early: the read path says so
        await asyncio.sleep(0)  # sendfile pauses reading: let the session's reader run
    return sent


async def send_elements(writer: asyncio.StreamWriter, reply: Reply, deadline: float) -> None:
    """Write one provide-data frame, streaming each element from its file."""
    src = reply.source
    writer.write(messages.ProvideData.header(reply.request_id, reply.count))
    for n, i in enumerate(range(reply.start, reply.start + reply.count)):
        j = i if reply.order is None else int(reply.order[i])
        offset, length = int(src.offsets[j]), int(src.lengths[j])
        writer.write(protocol.blob_header(length))
        if length >= SENDFILE_MIN:
            done = await _sendfile(writer, src, offset, length, deadline)
            offset += done
            length -= done
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
