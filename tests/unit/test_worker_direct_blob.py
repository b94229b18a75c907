"""Big blobs received straight from the socket in threads (``FrameReader.stream_blob``'s direct
path) against the event-loop path: the same bytes in the same order whatever the stream already
held, the next frame still read by the stream, and the same refusals with the same errors (a
worker closing mid-blob, a sink failing), over a real socketpair. A direct blob that is
cancelled stops its threads; its memory is its few buffers."""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from launcher.store.db import Database
from launcher.store.states import PendingState, StateStore
from launcher.worker import direct_blob
from launcher.worker.frames import ConnectionEnded, FrameReader, ProtocolViolation
from launcher.worker.listener import STREAM_LIMIT
from launcher.worker.session import CallResult, WorkerSession
from runtime import messages, protocol

MIB = 1 << 20


def pattern(n: int, seed: int = 0) -> bytes:
    """``n`` bytes that differ along the blob (a misplaced piece changes the digest)."""
    return np.random.default_rng(seed).bytes(n)


class Sink:
    """Records what it is given (by digest), from which threads; may fail after ``fail_at``."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.hash = hashlib.sha256()
        self.size = 0
        self.threads: set[str] = set()
        self.fail_at = fail_at
        self.calls = 0

    def write(self, data: bytes | memoryview) -> None:
        self.threads.add(threading.current_thread().name)
        self.calls += 1
        if self.fail_at is not None and self.size >= self.fail_at:
            raise OSError(28, "No space left on device")
        self.hash.update(data)
        self.size += memoryview(data).nbytes


def run_stream(
    blob_length: int,
    sent: bytes,
    sink: Sink,
    *,
    before: int = 0,
    after: bytes = b"",
    close: bool = True,
    direct_min: int | None = None,
    monkeypatch: pytest.MonkeyPatch | None = None,
) -> tuple[BaseException | None, bytes]:
    """The host reads one blob of ``blob_length`` from what a fake worker sends: ``sent`` (of
    which ``before`` bytes arrive, and are buffered by the stream, before the read starts),
    then ``after``; then it closes when ``close``. Returns (the error, what the stream read
    after the blob)."""
    if direct_min is not None:
        assert monkeypatch is not None
        monkeypatch.setattr(direct_blob, "DIRECT_MIN", direct_min)

    async def main() -> tuple[BaseException | None, bytes]:
        host, worker = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=host, limit=STREAM_LIMIT)
        frame_reader = FrameReader(reader)

        go = threading.Event()

        def send() -> None:
            try:
                worker.sendall(sent[:before])  # may wait for the read if the stream is full
                go.wait(30)
                worker.sendall(sent[before:] + after)
                if close:
                    worker.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the host stopped reading (a refused blob) and closed

        sender = threading.Thread(target=send)
        sender.start()
        if before:
            # What the stream buffers before it pauses the transport (flow control).
            held = min(before, 2 * STREAM_LIMIT)
            async with asyncio.timeout(10):
                while len(reader._buffer) < held:  # type: ignore[attr-defined]
                    await asyncio.sleep(0.001)
        go.set()
        error: BaseException | None = None
        tail = b""
        try:
            async with asyncio.timeout(30):
                await frame_reader.stream_blob(blob_length, sink.write, writer.transport)
                tail = await reader.read(len(after) + 1) if after else b""
                while after and len(tail) < len(after):
                    more = await reader.read(len(after))
                    if not more:
                        break
                    tail += more
        except (ConnectionEnded, OSError) as e:
            error = e
        finally:
            writer.close()
            try:
                worker.shutdown(socket.SHUT_RDWR)  # wakes a sender blocked on a full socket
            except OSError:
                pass
            sender.join(10)
            worker.close()
        return error, tail

    return asyncio.run(main())


class AlignmentSink(Sink):
    """Also records, per write, its offset in the blob and whether its buffer is page-aligned."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[int, int, bool]] = []

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        aligned = (
            not view.readonly
            and ctypes.addressof(ctypes.c_char.from_buffer(view)) % direct_blob.DIRECT_ALIGN == 0
        )
        self.writes.append((self.size, view.nbytes, aligned))
        super().write(data)


@pytest.mark.parametrize("before", [0, 1000, 300_000])
def test_after_its_first_bytes_a_direct_blob_comes_in_aligned_buffers(before: int) -> None:
    """What the key's writer needs to hand buffers to the device as they are (O_DIRECT)."""
    length = 20 * MIB + 123
    data = pattern(length)
    sink = AlignmentSink()
    error, _ = run_stream(length, data, sink, before=before)
    assert error is None and sink.hash.hexdigest() == hashlib.sha256(data).hexdigest()
    align = direct_blob.DIRECT_ALIGN
    firsts = 0 if not before else (2 if before % align else 1)  # the head, then its filler
    for offset, _size, aligned in sink.writes[firsts:]:
        assert offset % align == 0 and aligned, sink.writes
    assert all(size % align == 0 for _, size, _ in sink.writes[firsts:-1]), sink.writes


@pytest.mark.parametrize("before", [0, 1, 300_000, 8 * MIB, 20 * MIB - 1])
def test_direct_blob_arrives_whole_and_the_stream_reads_on(before: int) -> None:
    length = 20 * MIB
    data = pattern(length)
    after = b"\x00next-frame" * 1000
    sink = Sink()
    error, tail = run_stream(length, data, sink, before=before, after=after, close=False)
    assert error is None
    assert sink.size == length
    assert sink.hash.hexdigest() == hashlib.sha256(data).hexdigest()
    assert tail == after, "the direct read took bytes past its blob"
    assert sink.threads == {"blob-write"}


@pytest.mark.parametrize(("before", "direct"), [(0, True), (3 * MIB, True), (4 * MIB, False)])
def test_a_blob_the_stream_already_holds_is_read_on_the_loop(
    before: int, direct: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    length = 4 * MIB
    data = pattern(length, seed=1)
    after = b"\x00" * 10
    sink = Sink()
    error, tail = run_stream(
        length,
        data,
        sink,
        before=before,
        after=after,
        close=False,
        direct_min=MIB,
        monkeypatch=monkeypatch,
    )
    assert error is None and tail == after
    assert sink.hash.hexdigest() == hashlib.sha256(data).hexdigest()
    assert ("blob-write" in sink.threads) is direct


def test_the_event_loop_path_gives_the_same_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    length = 20 * MIB
    data = pattern(length)
    sink = Sink()
    error, _ = run_stream(
        length, data, sink, close=False, direct_min=1 << 40, monkeypatch=monkeypatch
    )
    assert error is None
    assert sink.hash.hexdigest() == hashlib.sha256(data).hexdigest()
    assert "blob-write" not in sink.threads


@pytest.mark.parametrize("cut", [0, 5, 4 * MIB, 4 * MIB + 1, 10 * MIB + 12345, 20 * MIB - 1])
def test_a_worker_closing_mid_blob_is_refused_as_on_the_event_loop(
    cut: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    length = 20 * MIB
    data = pattern(cut)
    direct_sink, loop_sink = Sink(), Sink()
    direct, _ = run_stream(length, data, direct_sink)
    with monkeypatch.context() as m:
        slow, _ = run_stream(length, data, loop_sink, direct_min=1 << 40, monkeypatch=m)
    assert isinstance(direct, ConnectionEnded) and isinstance(slow, ConnectionEnded)
    assert (
        str(direct)
        == str(slow)
        == (f"the worker closed its socket inside a blob ({length - cut} left)")
    )
    assert direct_sink.size == loop_sink.size == cut


def test_a_failing_sink_fails_the_blob_with_its_own_error(monkeypatch: pytest.MonkeyPatch) -> None:
    length = 20 * MIB
    data = pattern(length)
    direct_sink = Sink(fail_at=6 * MIB)
    direct, _ = run_stream(length, data, direct_sink, close=True)
    with monkeypatch.context() as m:
        loop_sink = Sink(fail_at=6 * MIB)
        slow, _ = run_stream(length, data, loop_sink, direct_min=1 << 40, monkeypatch=m)
    for error in (direct, slow):
        assert isinstance(error, OSError) and error.errno == 28, error
    # 0, 4 and 8 MiB in: the third write (of 4 MiB buffers) fails, and is the last
    assert direct_sink.calls == 3, "writes went on after a failure"


def _blob_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("blob-")]


def test_a_cancelled_direct_blob_stops_its_threads() -> None:
    """A worker that stops sending mid-blob and keeps its socket open: cancelling the read
    (the session closing) ends it at once and its threads soon after."""

    async def main() -> tuple[float, Sink]:
        host, worker = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=host, limit=STREAM_LIMIT)
        sink = Sink()
        await asyncio.to_thread(worker.sendall, b"\x07" * (5 * MIB))
        task = asyncio.create_task(
            FrameReader(reader).stream_blob(64 * MIB, sink.write, writer.transport)
        )
        async with asyncio.timeout(10):
            while sink.size < 5 * MIB:
                await asyncio.sleep(0.01)
        assert _blob_threads()
        start = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        took = time.monotonic() - start
        writer.close()
        worker.close()
        return took, sink

    took, sink = asyncio.run(main())
    assert took < 1.0
    deadline = time.monotonic() + 5
    while _blob_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _blob_threads()
    assert sink.size == 5 * MIB


def test_a_direct_blob_holds_a_bounded_number_of_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    """However fast the worker sends and however slow the sink, a blob's threads use
    ``DIRECT_BUFFERS`` buffers, taken from the pool and given back to it (the next blob's)."""
    monkeypatch.setattr(direct_blob, "_pool", [])
    taken: list[list[bytearray]] = []
    take = direct_blob._take_buffers

    def recording() -> list[bytearray]:
        taken.append(take())
        return taken[-1]

    monkeypatch.setattr(direct_blob, "_take_buffers", recording)
    slow = Sink()
    write: Callable[[bytes | memoryview], None] = slow.write

    def slow_write(data: bytes | memoryview) -> None:
        time.sleep(0.002)
        write(data)

    length = 40 * MIB
    data = pattern(length)
    error, _ = run_stream(length, data, Sink(), close=False)
    assert error is None
    slow.write = slow_write  # type: ignore[method-assign]
    error, _ = run_stream(length, data, slow, close=False)
    assert error is None and slow.hash.hexdigest() == hashlib.sha256(data).hexdigest()
    assert [len(t) for t in taken] == [direct_blob.DIRECT_BUFFERS] * 2
    assert all(len(b) == direct_blob.DIRECT_BUFFER_BYTES for b in taken[0])
    assert [id(b) for b in taken[1]] == [id(b) for b in taken[0]], "kept buffers are reused"
    assert sorted(map(id, direct_blob._pool)) == sorted(map(id, taken[0]))


# ---- through a session, into a real state ---------------------------------------------------


def _session_call(
    tmp_path: Path, frames_after_command: Callable[[str], list[bytes]], close: bool
) -> tuple[BaseException | CallResult, PendingState]:
    """A session's createModelState against a fake worker that answers with the frames made
    for its call id (then closes, when ``close``); the state's PendingState is returned."""
    store = StateStore(tmp_path, Database(tmp_path / "launcher.db"))
    pending = store.begin("m", "n")

    async def main() -> BaseException | CallResult:
        host, worker = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=host, limit=STREAM_LIMIT)
        session = WorkerSession(reader, writer)

        def fake_worker() -> None:
            head = worker.recv(9, socket.MSG_WAITALL)
            (length,) = struct.unpack(">Q", head[1:])
            call_id = json.loads(worker.recv(length, socket.MSG_WAITALL))["params"]["id"]
            try:
                for frame in frames_after_command(call_id):
                    worker.sendall(frame)
                if close:
                    worker.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        thread = threading.Thread(target=fake_worker)
        thread.start()
        try:
            async with asyncio.timeout(30):
                return await session.create_model_state({}, [], pending)
        except (ConnectionEnded, ProtocolViolation, OSError) as e:
            return e
        finally:
            session.close()
            worker.close()
            thread.join(10)

    return asyncio.run(main()), pending


def _joined(buffers: list[Any]) -> bytes:
    return b"".join(bytes(b) for b in buffers)


def test_a_big_key_reaches_the_state_through_a_session(tmp_path: Path) -> None:
    a, b = pattern(12 * MIB, seed=2), pattern(9 * MIB + 3, seed=3)

    def answer(call_id: str) -> list[bytes]:
        return [
            _joined(messages.ProvideStateData(call_id, ("a", "small", "b")).encode([a, b"s", b])),
            _joined(messages.CallResult(call_id).encode()),
        ]

    result, pending = _session_call(tmp_path, answer, close=False)
    assert result == CallResult(None)
    record = pending.commit()
    assert [(k.key, k.byte_size) for k in record.keys] == [
        ("a", len(a)),
        ("small", 1),
        ("b", len(b)),
    ]
    assert [k.sha256 for k in record.keys] == [hashlib.sha256(x).hexdigest() for x in (a, b"s", b)]


@pytest.mark.parametrize("cut", [0, 4 * MIB + 9])
def test_a_worker_closing_inside_a_big_key_ends_the_session(tmp_path: Path, cut: int) -> None:
    a = pattern(12 * MIB, seed=4)

    def answer(call_id: str) -> list[bytes]:
        frame = _joined(messages.ProvideStateData(call_id, ("a",)).encode([a]))
        return [frame[: len(frame) - len(a) - 1 + cut]]  # the head, then ``cut`` bytes

    result, pending = _session_call(tmp_path, answer, close=True)
    assert isinstance(result, ConnectionEnded)
    assert str(result) == f"the worker closed its socket inside a blob ({len(a) - cut} left)"
    pending.abort()
    assert not any((tmp_path / "tmp" / "states").iterdir())


def test_an_oversized_key_is_refused_before_any_byte_is_read(tmp_path: Path) -> None:
    def answer(call_id: str) -> list[bytes]:
        head = _joined(messages.ProvideStateData(call_id, ("a",)).encode([b""]))
        # the blob's length field says one byte over the limit
        return [head[:-9] + struct.pack(">Q", protocol.MAX_STATE_KEY_BYTES + 1)]

    result, pending = _session_call(tmp_path, answer, close=False)
    assert isinstance(result, ProtocolViolation)
    assert "over the limit" in str(result)
    pending.abort()
