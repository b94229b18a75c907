"""Serving a call's params: an answer keeps the order its request saw (a shuffle after it does
not reorder it), shuffles keep grouped datasets aligned, and bad shuffles and requests are
refused with a clear reason."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from launcher.params import ParamSource
from launcher.worker.data import DataServer
from launcher.worker.frames import ProtocolViolation
from runtime import messages


def source(tmp_path: Path, name: str, amount: int) -> ParamSource:
    path = tmp_path / name
    path.write_bytes(bytes(range(amount)))
    offsets = np.arange(amount, dtype=np.uint64)
    return ParamSource(name, os.open(path, os.O_RDONLY), offsets, np.ones(amount, np.uint64))


@pytest.fixture
def server(tmp_path: Path):
    data = DataServer(rng=np.random.default_rng(7))
    data.add("a", "p0", source(tmp_path, "a", 50))
    data.add("b", "p1", source(tmp_path, "b", 50))
    data.add("c", "p2", source(tmp_path, "c", 3))
    yield data
    for p in data.params.values():
        p.source.close()


def order(reply) -> list[int]:
    return [
        reply.start + i if reply.order is None else int(reply.order[reply.start + i])
        for i in range(reply.count)
    ]


def test_a_request_keeps_the_order_it_saw(server: DataServer) -> None:
    before = server.check_request(messages.RequestData(1, "p0", 0, 50))
    server.shuffle(server.check_shuffle(messages.Shuffle(("p0",))))
    after = server.check_request(messages.RequestData(2, "p0", 0, 50))
    assert order(before) == list(range(50))
    assert sorted(order(after)) == list(range(50)) and order(after) != list(range(50))


def test_a_grouped_shuffle_keeps_rows_aligned(server: DataServer) -> None:
    server.shuffle(server.check_shuffle(messages.Shuffle(("p0",))))
    server.shuffle(server.check_shuffle(messages.Shuffle(("p0", "p1", "p0"))))
    a = order(server.check_request(messages.RequestData(1, "p0", 0, 50)))
    b = order(server.check_request(messages.RequestData(2, "p1", 0, 50)))
    assert sorted(a) == sorted(b) == list(range(50))
    assert a != b  # p0 was shuffled alone first: the group shares a permutation, not an order
    server.shuffle(server.check_shuffle(messages.Shuffle(("p0", "p1"))))
    a2 = order(server.check_request(messages.RequestData(3, "p0", 0, 50)))
    b2 = order(server.check_request(messages.RequestData(4, "p1", 0, 50)))
    moved = {x: i for i, x in enumerate(a)}
    assert [moved[x] for x in a2] == [{x: i for i, x in enumerate(b)}[y] for y in b2]


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (messages.Shuffle(("p0", "nope")), "shuffle of an unknown dataset 'nope'"),
        (messages.Shuffle(("p0", "p2")), "shuffle of datasets with different amounts"),
        (messages.RequestData(1, "nope", 0, 1), "requestData for an unknown dataset 'nope'"),
        (messages.RequestData(1, "p2", 3, 1), "requestData: startIndex 3 outside 0..3"),
    ],
)
def test_bad_shuffles_and_requests_are_refused(
    server: DataServer, event: messages.DataEvent, reason: str
) -> None:
    with pytest.raises(ProtocolViolation, match=reason.replace("(", r"\(").replace(".", r"\.")):
        if isinstance(event, messages.Shuffle):
            server.check_shuffle(event)
        else:
            server.check_request(event)


def test_a_request_past_the_end_is_answered_with_what_exists(server: DataServer) -> None:
    reply = server.check_request(messages.RequestData(1, "p2", 1, 1000))
    assert (reply.start, reply.count) == (1, 2)
