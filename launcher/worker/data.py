"""Serving a call's params to the worker: order, shuffles and provide-data frames.

What a worker asks for is checked here (``check_request``); the work it causes stays bounded
and off the event loop: a shuffle permutes in a thread, and an answer yields to the loop every
few elements and gives up when the worker stops reading (``WriteStalled``).

A large element goes, once the transport holds nothing unsent, from its file to the socket
with ``os.sendfile`` on a descriptor of our own (the kernel copies it, nothing passes through
Python; the answer holds the write lock, so nothing else writes meanwhile, and the socket's
reading is left alone); each wait for room has the same write deadline as a written chunk,
and the worker receives the same bytes either way. Where sendfile cannot read the file, the
rest of the element is read and written as before. The launcher's end of the socket then
gets a ``SEND_BUFFER`` send buffer (the kernel's default, about 200 KiB, woke the worker every
few hundred KiB: a 256 MiB element took 2.7 times as long to arrive).
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from dataclasses import dataclass, field

import numpy as np

from launcher.params import ParamSource
from launcher.worker.frames import ProtocolViolation
from runtime import messages, protocol

CHUNK = 1 << 20
#: sendfile's answers for a file it cannot read from (the element is read and written).
_NO_SENDFILE = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP})
#: Elements of at least this many bytes are sent with sendfile (smaller ones are read and
#: written through the transport, which gathers them: fewer syscalls).
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
    #: Made at the first shuffle (seeding one from the OS costs tens of microseconds, and
    #: most calls never shuffle).
    rng: np.random.Generator | None = None

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
        if self.rng is None:
            self.rng = np.random.default_rng()
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


def _widen_send_buffer(sock: socket.socket) -> None:
    try:
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) < SEND_BUFFER:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    except OSError:
        pass  # a socket without the option: the default buffer does


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _writable(fd: int, deadline: float) -> None:
    """Wait until ``fd`` (our own descriptor of the socket) takes bytes, at most ``deadline``."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    loop.add_writer(fd, _resolve, ready)
    try:
        async with asyncio.timeout(deadline):
            await ready
    except TimeoutError:
        raise WriteStalled(
            f"the worker stopped reading: a write stayed blocked for over {deadline:g} s"
        ) from None
    finally:
        loop.remove_writer(fd)


def _own_socket(writer: asyncio.StreamWriter) -> int:
    """A descriptor of our own for the writer's socket (a transport closed meanwhile cannot
    hand us a number reused by another file, and the loop's watch on it is ours alone); -1
    where the transport has no socket or is closing."""
    transport = writer.transport
    sock = transport.get_extra_info("socket")
    fd = sock.fileno() if sock is not None and not transport.is_closing() else -1
    if fd < 0:
        return -1
    _widen_send_buffer(sock)
    return os.dup(fd)


async def _emptied(writer: asyncio.StreamWriter, fd: int, deadline: float) -> bool:
    """Wait until the transport holds nothing unsent (so that bytes sent on ``fd`` overtake
    nothing), each wait for room at most ``deadline``; False where it is closing."""
    transport = writer.transport
    while transport.get_write_buffer_size() and not transport.is_closing():
        await _writable(fd, deadline)  # the transport sends its buffer at the same wake-up
        await asyncio.sleep(0)
    return not transport.is_closing()


async def _send_direct(
    fd: int, head: bytes, src: ParamSource, offset: int, length: int, deadline: float
) -> int:
    """Send ``head`` and then the element's ``length`` bytes at ``offset`` of its file on the
    non-blocking socket ``fd``: the file's bytes by sendfile (the kernel copies them), waiting
    for room at most ``deadline`` each time (``WriteStalled``, as for a written chunk). The
    head always goes whole; the element bytes sent are returned, fewer where sendfile cannot
    read this file or the file ended early (the caller sends the rest, with that path's
    errors)."""
    view = memoryview(head)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            await _writable(fd, deadline)
    sent = since_yield = 0
    while sent < length:
        try:
            n = os.sendfile(fd, src.fd, offset + sent, min(length - sent, CHUNK))
        except BlockingIOError:
            await _writable(fd, deadline)
            continue
        except OSError as e:
            if e.errno in _NO_SENDFILE:
                return sent
            raise
        if n == 0:
            return sent  # the file ended early
        sent += n
        since_yield += n
        if since_yield >= CHUNK:
            since_yield = 0
            await asyncio.sleep(0)  # other sessions' turn
    return sent


async def send_elements(writer: asyncio.StreamWriter, reply: Reply, deadline: float) -> None:
    """Write one provide-data frame, streaming each element from its file."""
    src = reply.source
    writer.write(messages.ProvideData.header(reply.request_id, reply.count))
    for n, i in enumerate(range(reply.start, reply.start + reply.count)):
        j = i if reply.order is None else int(reply.order[i])
        offset, length = int(src.offsets[j]), int(src.lengths[j])
        head = protocol.blob_header(length)
        done = -1  # the element's bytes sent directly; -1: none, not even its head
        fd = _own_socket(writer) if length >= SENDFILE_MIN else -1
        if fd >= 0:
            try:
                if await _emptied(writer, fd, deadline):
                    done = await _send_direct(fd, head, src, offset, length, deadline)
            finally:
                os.close(fd)
        if done < 0:
            writer.write(head)
        else:
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
