"""The model-author API in-process, over a real socketpair: argument checks and what is sent."""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Iterator

import numpy as np
import pytest

from runtime import protocol
from runtime._call import Call, DataChannel
from runtime._transport import Connection
from runtime.api import DataLoader, StateProvider


@pytest.fixture
def wire() -> Iterator[tuple[Call, socket.socket]]:
    ours, host = socket.socketpair()
    host.settimeout(5)
    conn = Connection(ours)
    call = Call(conn, DataChannel(conn, lambda fn, *args: fn(*args)), "cmd-1")
    yield call, host
    ours.close()
    host.close()


def loader(call: Call, name: str = "x", size: int = 10) -> DataLoader:
    return DataLoader(call, name, f"ds-{name}", size, size * 6)


def read_data_event(host: socket.socket) -> dict[str, object]:
    head = host.recv(9, socket.MSG_WAITALL)
    assert head[0] == protocol.DATA_EVENT
    (length,) = struct.unpack(">Q", head[1:])
    return json.loads(host.recv(length, socket.MSG_WAITALL))


def test_positions_follow_the_official_rules(wire: tuple[Call, socket.socket]) -> None:
    x = loader(wire[0])
    x.set_position(3.7)
    assert x.position() == 3 and x.remaining() == 7
    x.set_position(-4)
    assert x.position() == 0
    assert x.has_next(10) and not x.has_next(10.5 + 1) and x.has_next(10.9)
    assert x.size() == 10 and x.total_byte_size() == 60


@pytest.mark.parametrize("bad", ["1", None, True, [1]])
def test_non_numeric_amounts_are_type_errors(wire: tuple[Call, socket.socket], bad: object) -> None:
    x = loader(wire[0])
    with pytest.raises(TypeError, match='expected "position" to be of type "int" or "float"'):
        x.set_position(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match='expected "amount"'):
        x.has_next(bad)  # type: ignore[arg-type]


def test_non_finite_amount_is_a_value_error(wire: tuple[Call, socket.socket]) -> None:
    with pytest.raises(ValueError, match="must be finite"):
        loader(wire[0]).has_next(float("nan"))


def test_position_at_size_is_refused(wire: tuple[Call, socket.socket]) -> None:
    with pytest.raises(ValueError, match="position 10 is not below the data size 10 of 'x'"):
        loader(wire[0]).set_position(10)


def test_shuffle_in_group_sends_every_dataset(wire: tuple[Call, socket.socket]) -> None:
    call, host = wire
    loader(call, "x").shuffle_in_group([loader(call, "y"), loader(call, "z")])
    assert read_data_event(host) == {"event": "shuffle", "datasets": ["ds-x", "ds-y", "ds-z"]}


def test_shuffle_in_group_refuses_bad_groups(wire: tuple[Call, socket.socket]) -> None:
    call = wire[0]
    x = loader(call, "x")
    with pytest.raises(TypeError, match="a list of DataLoaders"):
        x.shuffle_in_group(loader(call, "y"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a list of DataLoaders"):
        x.shuffle_in_group(["y"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="a group shuffles only loaders of equal size"):
        x.shuffle_in_group([loader(call, "y", size=11)])
    with pytest.raises(ValueError, match="appears more than once"):
        x.shuffle_in_group([x])


def test_provide_sends_one_event_with_the_buffers_bytes(wire: tuple[Call, socket.socket]) -> None:
    call, host = wire
    StateProvider(call).provide_all(
        [{"key": "a", "data": np.arange(3, dtype="<i2")}, {"key": "b", "data": b"xyz"}]
    )
    head = host.recv(13, socket.MSG_WAITALL)
    count, length = struct.unpack(">IQ", head[1:])
    assert count == 2
    assert json.loads(host.recv(length, socket.MSG_WAITALL)) == {
        "event": "provideStateData",
        "params": {"commandId": "cmd-1", "names": ["a", "b"]},
    }
    rest = host.recv(8 + 6 + 8 + 3 + 1, socket.MSG_WAITALL)
    int16s = b"\x00\x00\x01\x00\x02\x00"
    assert rest == struct.pack(">Q", 6) + int16s + struct.pack(">Q", 3) + b"xyz\x00"


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        ([{"key": "a"}], TypeError, "expected a list of dicts"),
        ([{"key": "", "data": b""}], ValueError, "must not be empty"),
        ([{"key": "a", "data": np.array([object()])}], TypeError, "numpy array of Python objects"),
        ([{"key": "a", "data": 5}], TypeError, "buffer protocol"),
    ],
)
def test_provide_all_refuses_bad_items(
    wire: tuple[Call, socket.socket], data: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        StateProvider(wire[0]).provide_all(data)  # type: ignore[arg-type]


def test_nothing_is_sent_when_one_key_of_a_call_is_refused(
    wire: tuple[Call, socket.socket],
) -> None:
    call, host = wire
    provider = StateProvider(call)
    with pytest.raises(ValueError, match="more than once"):
        provider.provide_all([{"key": "a", "data": b"1"}, {"key": "a", "data": b"2"}])
    provider.provide("a", b"1")  # "a" was not used up by the refused call
    host.settimeout(2)
    assert host.recv(1) == bytes([protocol.MESSAGE])


def test_a_group_too_large_for_one_shuffle_event_is_refused_before_sending(
    wire: tuple[Call, socket.socket],
) -> None:
    call, host = wire
    group = [loader(call, f"param-with-a-long-name-{i:04d}") for i in range(400)]
    with pytest.raises(ValueError, match="400 data loaders are too many to shuffle together"):
        group[0].shuffle_in_group(group[1:])
    group[0].shuffle_in_group(group[1:100])  # a smaller group goes out as one event
    assert len(read_data_event(host)["datasets"]) == 100  # type: ignore[arg-type]
