"""Every worker-protocol message: encoded to bytes fixed here (a snapshot), decoded by the side
that receives it (the worker's frame reader, or the host's), equal to what was encoded. Then
what each parser refuses, and the cuts the host makes to what a worker sends."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from typing import Any

import pytest

from launcher.worker.frames import (
    DataEvent,
    FrameReader,
    Message,
    ProtocolViolation,
    separators_outside_strings,
)
from runtime import messages as m
from runtime._frames import PendingRequest, ProvideData, Refused, read_frame
from runtime._transport import Connection

P = m.ParamHandle("x", "p0", 2, 24)
OTHER = m.OtherModelHandle("other", "/mnt/other", (m.ParamHandle("w", "m0k0", 1, 8),))
U64 = struct.Struct(">Q")


def to_worker(frame: bytes, claim: Any = lambda _id: None) -> Any:
    """Decode a host -> worker frame with the worker's own reader, over a real socket."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.sendall(frame)
        return read_frame(Connection(theirs), claim)


def to_host(frame: bytes) -> tuple[Any, list[bytes]]:
    """Decode a worker -> host frame with the host's reader: (typed message, blobs)."""

    async def decode() -> tuple[Any, list[bytes]]:
        stream = asyncio.StreamReader()
        stream.feed_data(frame)
        stream.feed_eof()
        reader = FrameReader(stream)
        head = await reader.next_frame()
        if isinstance(head, DataEvent):
            return head.event, []
        assert isinstance(head, Message)
        blobs: list[bytes] = []
        for _ in range(head.blob_count):
            parts: list[bytes] = []
            await reader.read_blob(await reader.blob_length(1 << 20), parts.append)
            blobs.append(b"".join(parts))
        await reader.end_message()
        assert await stream.read() == b"", "the frame was not read to its end"
        return head.parse(), blobs

    return asyncio.run(decode())


# ---- host -> worker ---------------------------------------------------------------------------


def test_initialize_snapshot() -> None:
    msg = m.Initialize("/models/hello/main.py")
    wire = msg.encode()
    assert wire == (
        b"\x00\x00\x00\x00\x00\x00\x00\x00A"
        b'{"method":"initialize","params":{"path":"/models/hello/main.py"}}'
    )
    assert to_worker(wire) == msg


def test_call_create_model_state_snapshot() -> None:
    msg = m.CallCreateModelState("c1", (P,), (OTHER,))
    wire = msg.encode()
    assert wire == (
        b"\x00\x00\x00\x00\x00\x00\x00\x00\xf8"
        b'{"method":"callCreateModelState","params":{"id":"c1","params":[{"name":"x",'
        b'"dataset":"p0","amount":2,"totalByteSize":24}],"otherModels":[{"id":"other",'
        b'"mountPath":"/mnt/other","state":[{"name":"w","dataset":"m0k0","amount":1,'
        b'"totalByteSize":8}]}]}}'
    )
    assert to_worker(wire) == msg


def test_provide_data_snapshot() -> None:
    msg = m.ProvideData(7, [b"ab", b""])
    wire = b"".join(msg.encode())
    assert wire == (
        b"\x01\x00\x00\x00\x07\x00\x00\x00\x02"
        b"\x00\x00\x00\x00\x00\x00\x00\x02ab"
        b"\x00\x00\x00\x00\x00\x00\x00\x00"
    )
    request = PendingRequest(2, 10, lambda _blobs: None)
    frame = to_worker(wire, {7: request}.pop)
    assert isinstance(frame, ProvideData) and frame.request is request
    assert m.ProvideData(7, [bytes(b) for b in frame.blobs]) == m.ProvideData(7, [b"ab", b""])


def test_unknown_command_is_decoded_with_its_id() -> None:
    wire = b'{"method":"callTrain","params":{"id":"q"}}'
    assert to_worker(b"\x00" + U64.pack(len(wire)) + wire) == m.UnknownCommand("callTrain", "q")


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"id": "c", "params": [{"name": "x"}]}, "params[0].dataset is missing"),
        ({"id": "c", "params": [{**P.to_json(), "amount": -1}]}, "params[0].amount is -1"),
        ({"id": "c", "params": [{**P.to_json(), "amount": True}]}, "params[0].amount is True"),
        ({"id": "c", "params": {}}, "params is not a list"),
        ({"id": "c", "otherModels": [{"id": "o", "mountPath": 3}]}, "mountPath is missing"),
        ({"params": []}, "callCreateModelState.id is missing"),
    ],
)
def test_malformed_call_is_refused_with_its_reason(params: dict[str, Any], reason: str) -> None:
    body = json.dumps({"method": "callCreateModelState", "params": params}).encode()
    frame = to_worker(b"\x00" + U64.pack(len(body)) + body)
    assert isinstance(frame, Refused) and reason in frame.reason, frame


# ---- worker -> host: messages ------------------------------------------------------------------


def test_model_session_initialized_snapshot() -> None:
    msg = m.ModelSessionInitialized()
    wire = b"".join(msg.encode())
    assert wire == (
        b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00/"
        b'{"event":"modelSessionInitialized","params":{}}\x00'
    )
    assert to_host(wire) == (msg, [])


def test_model_session_initialized_with_error_snapshot() -> None:
    msg = m.ModelSessionInitialized(m.ExceptionError("Traceback: boom"))
    wire = b"".join(msg.encode())
    assert wire == (
        b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00g"
        b'{"event":"modelSessionInitialized","params":{"error":{"code":"exception",'
        b'"details":"Traceback: boom"}}}\x00'
    )
    assert to_host(wire) == (msg, [])


def test_provide_state_data_snapshot() -> None:
    msg = m.ProvideStateData("c1", ("k", "j"))
    wire = b"".join(msg.encode([b"\x01\x02", b""]))
    assert wire == (
        b"\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00J"
        b'{"event":"provideStateData","params":{"commandId":"c1","names":["k","j"]}}'
        b"\x00\x00\x00\x00\x00\x00\x00\x02\x01\x02"
        b"\x00\x00\x00\x00\x00\x00\x00\x00"
        b"\x00"
    )
    assert to_host(wire) == (msg, [b"\x01\x02", b""])


def test_call_result_snapshot() -> None:
    msg = m.CallResult("c1")
    wire = b"".join(msg.encode())
    assert (
        wire == b'\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17{"id":"c1","result":{}}\x00'
    )
    assert to_host(wire) == (msg, [])


def test_call_result_with_error_snapshot() -> None:
    msg = m.CallResult("c1", m.ExceptionError("boom"))
    wire = b"".join(msg.encode())
    assert wire == (
        b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00D"
        b'{"id":"c1","result":{"error":{"code":"exception","details":"boom"}}}\x00'
    )
    assert to_host(wire) == (msg, [])


# ---- worker -> host: data events ---------------------------------------------------------------


def test_request_data_snapshot() -> None:
    msg = m.RequestData(3, "p0", 0, 2)
    wire = msg.encode()
    assert wire == (
        b"\x01\x00\x00\x00\x00\x00\x00\x00N"
        b'{"event":"requestData","requestId":3,"dataset":"p0","startIndex":0,"amount":2}'
    )
    assert to_host(wire) == (msg, [])


def test_shuffle_snapshot() -> None:
    msg = m.Shuffle(("p0", "p1"))
    wire = msg.encode()
    assert wire == b'\x01\x00\x00\x00\x00\x00\x00\x00*{"event":"shuffle","datasets":["p0","p1"]}'
    assert to_host(wire) == (msg, [])


def data_event(doc: object) -> bytes:
    body = json.dumps(doc).encode()
    return b"\x01" + U64.pack(len(body)) + body


def message(doc: object) -> bytes:
    body = json.dumps(doc).encode()
    return b"\x00" + struct.pack(">IQ", 0, len(body)) + body + b"\x00"


REQUEST = {"event": "requestData", "requestId": 1, "dataset": "p0", "startIndex": 0, "amount": 1}


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (data_event({**REQUEST, "extra": 1}), "unknown fields ['extra']"),
        (data_event({"event": "shuffle", "datasets": ["p0"], "x": 0}), "unknown fields ['x']"),
        (data_event({**REQUEST, "requestId": 1 << 32}), "requestData.requestId is 4294967296"),
        (data_event({**REQUEST, "startIndex": -1}), "requestData.startIndex is -1"),
        (data_event({**REQUEST, "dataset": 5}), "requestData.dataset is missing"),
        (data_event({"event": "shuffle", "datasets": []}), "non-empty list"),
        (data_event({"event": "train"}), "unknown data event 'train'"),
        (data_event({**REQUEST, "dataset": "p" * 9000}), "over the limit of 8192"),
        (message({"event": "trainingProgress", "params": {}}), "unknown event 'trainingProgress'"),
        (message({"id": 3, "result": {}}), "a result for the call id 3"),
        (message({"id": "c", "result": {}, "x": 1}), "a result has unknown fields ['x']"),
        (message({"id": "c", "result": {"pad": "x"}}), "result's result has unknown fields"),
        (
            message({"event": "modelSessionInitialized", "params": {"junk": 1}}),
            "modelSessionInitialized has unknown fields ['junk']",
        ),
        (
            message(
                {"event": "provideStateData", "params": {"commandId": "c", "names": [], "j": 0}}
            ),
            "provideStateData has unknown fields ['j']",
        ),
        (message({"event": "modelSessionInitialized", "x": 1}), "an event has unknown fields"),
        (message({"id": "c", "result": []}), "a result's result is not an object"),
        (
            message({"event": "provideStateData", "params": {"commandId": "c", "names": [""]}}),
            "provideStateData: a state key name must not be empty",
        ),
        (
            message(
                {"event": "provideStateData", "params": {"commandId": "c", "names": ["k"] * 2}}
            ),
            "a key is named twice",
        ),
        (
            message(
                {"event": "provideStateData", "params": {"commandId": "c", "names": ["k" * 257]}}
            ),
            "a state key name has 257 characters; at most 256: 'kkkk",
        ),
    ],
)
def test_host_refuses_what_the_protocol_does_not_allow(frame: bytes, reason: str) -> None:
    with pytest.raises(ProtocolViolation) as e:
        to_host(frame)
    assert reason in str(e.value)
    assert len(str(e.value)) < 400, "an error quotes only a cut piece of what was sent"


def test_host_cuts_exception_details_to_ten_thousand_characters() -> None:
    details = "x" * (1 << 20) + " the end"
    for frame in (
        b"".join(m.CallResult("c1", m.ExceptionError(details)).encode()),
        b"".join(m.ModelSessionInitialized(m.ExceptionError(details)).encode()),
    ):
        msg, _ = to_host(frame)
        assert msg.error is not None
        assert len(msg.error.details) == m.MAX_EXCEPTION_DETAILS
        assert msg.error.details.startswith("xxxx") and "more characters" in msg.error.details


def test_an_error_without_details_becomes_a_short_text() -> None:
    msg, _ = to_host(message({"id": "c", "result": {"error": ["y" * 50_000]}}))
    assert msg.error.details.startswith("the worker reported an error without details")
    assert len(msg.error.details) < 1200


@pytest.mark.parametrize(
    "values",
    [[0] * 300_000, ["a"] * 100_000, [{}] * 100_000],
    ids=["numbers", "strings", "objects"],
)
def test_large_json_of_tiny_values_is_refused_before_parsing(values: list[Any]) -> None:
    with pytest.raises(ProtocolViolation, match="over 10000 values"):
        to_host(message({"id": "c", "result": {"v": values}}))


def test_large_json_of_one_long_string_with_commas_and_quotes_is_parsed_and_cut() -> None:
    text = 'File "m.py", line 3, in f: a, b = {"k": [1, 2]}\\n\n' * 200_000
    msg, _ = to_host(b"".join(m.CallResult("c", m.ExceptionError(text)).encode()))
    assert len(msg.error.details) == 10_000 and msg.error.details.startswith(text[:9000])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"a":"x,y:z"}', 1),
        (b'{"a":"q\\"u,o:t\\"e"}', 1),
        (b'{"a":"back\\\\","b":[1,2,3]}', 5),
        (b'["a\\\\\\"b",1,{"c":":"}]', 3),
        (b'{"a":"unterminated,', 1),
    ],
)
def test_separators_are_counted_outside_strings_only(raw: bytes, expected: int) -> None:
    assert separators_outside_strings(raw, 100) == expected


def test_cut_never_exceeds_its_limit() -> None:
    for n in (0, 9_999, 10_000, 10_001, 10_100, 1 << 23):
        assert len(m.cut("y" * n)) == min(n, 10_000)
    assert m.cut("short") == "short"
