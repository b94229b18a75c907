"""Fuzzing the host side of the worker protocol with random and mutated worker frames:
``FrameReader`` over a fed ``asyncio.StreamReader``, and a ``WorkerSession`` over a real
socketpair running a call. Only ``ProtocolViolation`` / ``ConnectionEnded`` may come out (or a
proper answer), never a hang, never an allocation that a length field asked for."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from launcher.params import ParamSource
from launcher.worker.frames import ConnectionEnded, FrameReader, Message, ProtocolViolation
from launcher.worker.session import CallResult, WorkerSession
from runtime import protocol
from runtime.tensor import serialize

pytestmark = pytest.mark.fuzz
# make fuzz (profile "long") runs more; make test runs 200 examples.
FUZZ = settings(
    max_examples=max(200, settings.default.max_examples),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
ENDINGS = (ProtocolViolation, ConnectionEnded)
#: what a reader may hold beyond the input it was given (buffers, JSON objects)
ALLOC_SLACK = 4 << 20


def _frames(call_id: str) -> list[bytes]:
    """Valid worker -> host frames of every kind, for one call."""

    def message(obj: dict[str, Any], blobs: tuple[bytes, ...] = ()) -> bytes:
        return b"".join(bytes(b) for b in protocol.encode_message(obj, blobs))

    state = {"event": "provideStateData", "params": {"commandId": call_id, "names": ["k", "j"]}}
    return [
        message({"event": "modelSessionInitialized", "params": {}}),
        message(state, (b"\x01" * 100, b"")),
        protocol.encode_data_event(
            {"event": "requestData", "requestId": 3, "dataset": "p0", "startIndex": 0, "amount": 2}
        ),
        protocol.encode_data_event({"event": "shuffle", "datasets": ["p0"]}),
        message({"event": "trainingProgress", "params": {}}),
        message({"id": call_id, "result": {"error": {"code": "exception", "details": "x"}}}),
        message({"id": call_id, "result": {}}),
    ]


HUGE = [1 << 63, (1 << 64) - 1, (1 << 32) - 1, protocol.MAX_JSON_BYTES + 1, 1 << 40]


@st.composite
def worker_bytes(draw: st.DrawFn) -> Callable[[str], bytes]:
    """Random bytes, or valid frames mutated: bits flipped, cut, spliced, lengths made huge.
    A recipe for a call id: what is drawn never depends on the id (hypothesis replays it)."""
    if draw(st.booleans()):
        raw = draw(st.binary(max_size=512))
        return lambda _call_id: raw
    picks = draw(st.lists(st.integers(0, len(_frames("c")) - 1), min_size=1, max_size=6))
    ops = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["flip", "cut", "insert", "huge4", "huge8"]),
                st.integers(0, 1 << 16),  # the position, modulo the length
                st.integers(1, 255),
                st.binary(min_size=1, max_size=16),
                st.sampled_from(HUGE),
            ),
            max_size=4,
        )
    )

    def make(call_id: str) -> bytes:
        templates = _frames(call_id)
        data = bytearray(b"".join(templates[i] for i in picks))
        for op, where, xor, insert, huge in ops:
            if not data:
                break
            at = where % len(data)
            if op == "flip":
                data[at] ^= xor
            elif op == "cut":
                del data[at:]
            elif op == "insert":
                data[at:at] = insert
            else:  # a length field (u32 or u64) anywhere made enormous
                width = 4 if op == "huge4" else 8
                data[at : at + width] = (huge & ((1 << (8 * width)) - 1)).to_bytes(width, "big")
        return bytes(data)

    return make


async def _drain(data: bytes) -> None:
    """Read every frame (and every blob) until the reader gives up."""
    stream = asyncio.StreamReader()
    stream.feed_data(data)
    stream.feed_eof()
    frames = FrameReader(stream)
    while True:
        frame = await frames.next_frame()
        if isinstance(frame, Message):
            for _ in range(frame.blob_count):
                length = await frames.blob_length(protocol.MAX_STATE_KEY_BYTES)
                await frames.skip_blob(length)
            await frames.end_message()


def _read_all(data: bytes) -> BaseException:
    async def bounded() -> None:
        async with asyncio.timeout(5):
            await _drain(data)

    try:
        asyncio.run(bounded())
    except BaseException as e:
        return e
    raise AssertionError("the reader returned without the stream ending")


@FUZZ
@given(worker_bytes())
def test_frame_reader_ends_every_input_with_a_protocol_error(
    recipe: Callable[[str], bytes],
) -> None:
    data = recipe("c1")
    tracemalloc.start()
    try:
        outcome = _read_all(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(outcome, ENDINGS), repr(outcome)
    assert peak < len(data) + ALLOC_SLACK


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"\x01" + struct.pack(">Q", 1 << 63), "over the limit"),
        (b"\x00" + struct.pack(">IQ", 0, (1 << 64) - 1), "over the limit"),
        (b"\x00" + struct.pack(">IQ", (1 << 32) - 1, 2), "blobs"),
        (b"\x00" + struct.pack(">IQ", 1, 2) + b"{}" + struct.pack(">Q", 1 << 63), "over the limit"),
        (b"\x7f", "unknown frame kind"),
    ],
)
def test_huge_length_fields_are_refused_before_any_allocation(frame: bytes, message: str) -> None:
    tracemalloc.start()
    try:
        outcome = _read_all(frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(outcome, ProtocolViolation) and message in str(outcome), repr(outcome)
    assert peak < ALLOC_SLACK


class _CappedSink:
    """A state sink in memory that refuses to hold more than a worker could legally send."""

    def __init__(self) -> None:
        self.keys: dict[str, int] = {}

    def key_writer(self, key: str) -> _CappedSink._Writer:
        self.keys[key] = 0
        return _CappedSink._Writer(self, key)

    class _Writer:
        def __init__(self, sink: _CappedSink, key: str) -> None:
            self.sink, self.key = sink, key

        def write(self, data: bytes | memoryview) -> None:
            self.sink.keys[self.key] += len(data)
            assert self.sink.keys[self.key] <= protocol.MAX_STATE_KEY_BYTES

        def finish(self) -> object:
            return None


def _param(tmp_dir: str) -> ParamSource:
    """A served param of two tensors, as intake would have spooled it."""
    blobs = [serialize(np.arange(4, dtype=np.int32)), serialize("two")]
    path = os.path.join(tmp_dir, "param")
    with open(path, "wb") as f:
        f.write(b"".join(blobs))
    fd = os.open(path, os.O_RDONLY)
    lengths = np.array([len(b) for b in blobs], np.uint64)
    offsets = np.array([0, len(blobs[0])], np.uint64)
    return ParamSource("x", fd, offsets, lengths)


async def _session_call(
    data_for: Callable[[str], bytes], tmp_dir: str
) -> CallResult | BaseException:
    host_sock, worker_sock = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=host_sock)
    session = WorkerSession(reader, writer)
    param = _param(tmp_dir)
    worker_r, worker_w = await asyncio.open_connection(sock=worker_sock)
    call = asyncio.create_task(session.create_model_state({"x": param}, [], _CappedSink()))
    try:
        kind = await worker_r.readexactly(1)
        assert kind == b"\x00"
        (length,) = struct.unpack(">Q", await worker_r.readexactly(8))
        command = json.loads(await worker_r.readexactly(length))
        worker_w.write(data_for(command["params"]["id"]))
        await worker_w.drain()
        worker_w.close()
        async with asyncio.timeout(5):
            return await call
    except BaseException as e:
        return e
    finally:
        session.close()
        param.close()
        call.cancel()


@FUZZ
@given(recipe=worker_bytes())
def test_worker_session_answers_or_ends_with_a_protocol_error(
    recipe: Callable[[str], bytes], tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp_dir = str(tmp_path_factory.mktemp("fz"))
    outcome = asyncio.run(_session_call(recipe, tmp_dir))
    assert isinstance(outcome, (CallResult, *ENDINGS)), repr(outcome)
