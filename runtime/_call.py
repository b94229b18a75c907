"""What one model call may do on the wire: read data pages, shuffle datasets, provide state.

:class:`DataChannel` owns the worker-wide table of pending ``requestData`` ids. :class:`Call`
is the per-command view the model-author API (``runtime.api``) works through; it refuses
everything once the call has completed, and enforces the state limits before a byte is sent.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from runtime import messages, protocol
from runtime._frames import PendingRequest
from runtime._transport import Connection

#: The most elements asked for in one ``requestData``.
PAGE_ELEMENTS = 1024
#: The most ``requestData`` of one read waiting for their answers at once.
OUTSTANDING_PAGES = 4
#: The bytes one ``requestData`` aims at (estimated from the dataset's mean element size).
PAGE_BYTES = 64 << 20

#: Runs a callable on the event loop's thread, from any thread.
Post = Callable[..., None]


class DataChannel:
    """Sends ``requestData`` events and matches the host's answers to them."""

    def __init__(self, conn: Connection, post: Post) -> None:
        self._conn = conn
        self._post = post
        self._next_id = 0
        self._pending: dict[int, PendingRequest] = {}

    def claim(self, request_id: int) -> PendingRequest | None:
        """Called by the reader thread: a dict pop is atomic, so each answer is taken once."""
        return self._pending.pop(request_id, None)

    def request(
        self, dataset: str, start: int, amount: int, max_bytes: int
    ) -> asyncio.Future[list[bytearray]]:
        future: asyncio.Future[list[bytearray]] = asyncio.get_running_loop().create_future()

        def resolve(blobs: list[bytearray]) -> None:
            self._post(_settle, future, blobs)

        request_id = self._next_id
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF
        # Registered before sending, so the answer can never arrive before its entry.
        self._pending[request_id] = PendingRequest(amount, max_bytes, resolve)
        self._conn.send([messages.RequestData(request_id, dataset, start, amount).encode()])
        return future


def _settle(future: asyncio.Future[list[bytearray]], blobs: list[bytearray]) -> None:
    if not future.done():
        future.set_result(blobs)


async def _page(
    dataset: str, first: int, future: asyncio.Future[list[bytearray]], wanted: int
) -> list[bytearray]:
    blobs = await future
    if len(blobs) != wanted:
        raise RuntimeError(
            f"dataset {dataset!r}: the host answered {len(blobs)} of the {wanted} "
            f"elements requested from index {first}"
        )
    return blobs


class CallCompleted(RuntimeError):
    """The model used its options after its call had returned."""


class Call:
    """One ``callCreateModelState`` command as the model's options see it."""

    def __init__(self, conn: Connection, channel: DataChannel, command_id: str) -> None:
        self._conn = conn
        self._channel = channel
        self.command_id = command_id
        self.completed = False
        self._provided: set[str] = set()

    def complete(self) -> None:
        self.completed = True

    def check_open(self, what: str) -> None:
        if self.completed:
            raise CallCompleted(f"{what}: the createModelState call has already completed")

    async def read(
        self, dataset: str, start: int, amount: int, page: int, max_bytes: int
    ) -> list[bytearray]:
        """Elements ``start .. start+amount`` of ``dataset``, asked for in pages of ``page``.

        At most ``OUTSTANDING_PAGES`` requests are in flight at once (the host answers no more
        at a time either), so a large read neither floods the host nor waits on it.
        """
        end = start + amount
        out: list[bytearray] = []
        pending: deque[tuple[int, asyncio.Future[list[bytearray]], int]] = deque()
        for first in range(start, end, page):
            if len(pending) == OUTSTANDING_PAGES:
                out.extend(await _page(dataset, *pending.popleft()))
            wanted = min(page, end - first)
            future = self._channel.request(dataset, first, wanted, max_bytes)
            pending.append((first, future, wanted))
        while pending:
            out.extend(await _page(dataset, *pending.popleft()))
        return out

    def shuffle(self, datasets: list[str]) -> None:
        frame = messages.Shuffle(tuple(datasets)).encode()
        if len(frame) - messages.DATA_EVENT_HEAD > messages.MAX_DATA_EVENT_JSON:
            raise ValueError(
                f"DataLoader shuffle_in_group: {len(datasets)} data loaders are too many to "
                f"shuffle together (the event would be over {messages.MAX_DATA_EVENT_JSON} bytes)"
            )
        self._conn.send([frame])

    def provide(self, items: list[tuple[str, memoryview]]) -> None:
        """Send one ``provideStateData`` event; every limit is checked before anything is sent."""
        self.check_open("StateProvider")
        names: list[str] = []
        for key, data in items:
            reason = messages.key_name_reason(key)
            if reason is not None:
                raise ValueError(f"StateProvider: {reason}")
            if key in self._provided or key in names:
                raise ValueError(f"StateProvider: state key {key!r} was provided more than once")
            if data.nbytes > protocol.MAX_STATE_KEY_BYTES:
                raise ValueError(
                    f"StateProvider: state key {key!r} holds {data.nbytes} bytes, more than the "
                    f"limit of {protocol.MAX_STATE_KEY_BYTES} bytes (1 GiB); split it into "
                    "several keys"
                )
            names.append(key)
        if len(self._provided) + len(names) > protocol.MAX_STATE_KEYS:
            raise ValueError(
                f"StateProvider: at most {protocol.MAX_STATE_KEYS} state keys may be provided; "
                f"{len(self._provided)} were provided before and {len(names)} more were given"
            )
        if not names:
            return
        self._provided.update(names)
        event = messages.ProvideStateData(self.command_id, tuple(names))
        self._conn.send(event.encode([data for _, data in items]))
