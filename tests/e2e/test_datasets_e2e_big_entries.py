"""Entries bigger than gRPC's 4 MiB message limit: split by the launcher into parts of at most
2 MiB and put back together by the client; a stream that breaks that framing is refused."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from launcher.api.dataset import ENTRY_PART
from launcher.client import LauncherClient, LauncherConnectionError
from launcher.client.dataset import read_entries
from launcher.v1 import common_pb2, dataset_pb2, dataset_pb2_grpc
from runtime.tensor import serialize
from tests.support.launcher_proc import LauncherProcess

Chunk = dataset_pb2.GetEntriesChunk
BIG = np.arange(5 << 20, dtype=np.float32)  # 20 MiB, five times gRPC's receive limit


@pytest.fixture(scope="module")
def big_dataset(launcher: LauncherProcess) -> Iterator[str]:
    with LauncherClient(launcher.address) as client:
        res = client.dataset.create_dataset(
            name="big entries",
            description="",
            keys=[{"name": "x", "required": True}, {"name": "label", "required": True}],
        )
        dataset_id = str(res["result"]["datasetId"])
        xs = [np.float32(1.5), BIG, np.arange(3, dtype=np.int8)]
        labels = [np.array(i, dtype=np.int64) for i in range(3)]
        added = client.dataset.add_entries(
            dataset_id=dataset_id, keys=[{"key": "x", "data": xs}, {"key": "label", "data": labels}]
        )
        assert "result" in added, added
        yield dataset_id
        client.dataset.delete_dataset(dataset_id=dataset_id)


def test_a_20_mib_entry_is_read_through_the_client_between_small_ones(
    client: LauncherClient, big_dataset: str
) -> None:
    res = client.dataset.get_entries(dataset_id=big_dataset, entries={"start": 0, "end": 3})
    x, label = res["result"]["keys"]
    assert (x["name"], label["name"]) == ("x", "label")
    assert [e["index"] for e in x["data"]] == [0, 1, 2]
    assert x["data"][0]["data"].item() == 1.5
    assert np.array_equal(x["data"][1]["data"].numpy(), BIG)
    assert x["data"][2]["data"].numpy().tolist() == [0, 1, 2]
    assert [(e["index"], e["data"].item()) for e in label["data"]] == [(0, 0), (1, 1), (2, 2)]

    only = client.dataset.get_entries(dataset_id=big_dataset, entries=[1])
    assert np.array_equal(only["result"]["keys"][0]["data"][0]["data"].numpy(), BIG)


def test_no_message_of_a_big_entry_exceeds_one_part(
    launcher: LauncherProcess, big_dataset: str
) -> None:
    request = dataset_pb2.GetEntriesRequest(
        dataset_id=big_dataset, entries=dataset_pb2.EntrySelection(indexes={"indexes": [1]})
    )
    with grpc.insecure_channel(launcher.address) as channel:
        messages = list(dataset_pb2_grpc.DatasetStub(channel).GetEntries(request))
    x = [m for m in messages if m.key != "label"]
    size = len(serialize(BIG))
    assert (x[0].key, x[0].index, x[0].byte_size) == ("x", 1, size)
    assert all(not m.key and not m.byte_size for m in x[1:])
    assert all(len(m.data) <= ENTRY_PART for m in messages)
    assert len(x) == -(-size // ENTRY_PART)
    assert b"".join(m.data for m in x) == serialize(BIG)


def test_an_entry_in_one_message_without_a_size_is_read_whole() -> None:
    res = read_entries([Chunk(key="x", index=4, data=serialize(np.int32(9)))])
    assert [(e["index"], e["data"].item()) for e in res["result"]["keys"][0]["data"]] == [(4, 9)]


def test_an_error_in_the_stream_is_the_answer() -> None:
    chunks = [Chunk(error=common_pb2.Error(code="dataset_not_found", dataset_id="d"))]
    assert read_entries(chunks) == {"error": {"code": "dataset_not_found", "datasetId": "d"}}


def split(data: bytes, key: str = "x", index: int = 0) -> list[dataset_pb2.GetEntriesChunk]:
    half = len(data) // 2
    return [
        Chunk(key=key, index=index, byte_size=len(data), data=data[:half]),
        Chunk(data=data[half:]),
    ]


TENSOR = serialize(np.arange(10, dtype=np.float32))
CUT = f"entry 0 of key 'x' ended after {len(TENSOR) // 2} of {len(TENSOR)} bytes"


@pytest.mark.parametrize(
    ("chunks", "message"),
    [
        ([Chunk(data=TENSOR)], "sent data before naming its entry"),
        (split(TENSOR)[:1], CUT),
        (split(TENSOR)[:1] + split(TENSOR, index=1), CUT),
        (split(TENSOR) + [Chunk(data=b"\x00")], "sent data before naming its entry"),
        (
            [Chunk(key="x", byte_size=3, data=TENSOR)],
            "entry 0 of key 'x' sent more than its 3 bytes",
        ),
        ([Chunk(key="x", data=TENSOR + b"\x00")], "bytes after an entry's tensor"),
        ([Chunk(key="x", data=b"\x63\x00")], "invalid tensor"),
    ],
    ids=["no-key", "cut-at-end", "cut-by-next", "extra-part", "too-long", "trailing", "garbage"],
)
def test_a_stream_breaking_the_entry_framing_raises(
    chunks: list[dataset_pb2.GetEntriesChunk], message: str
) -> None:
    with pytest.raises(LauncherConnectionError, match=message):
        read_entries(chunks)


def test_a_job_reads_the_20_mib_entry_of_a_dataset_param(
    client: LauncherClient, big_dataset: str
) -> None:
    res = client.model.create_state(
        model_id="dataset_checksum",
        name="big entry",
        params=[
            {"name": "x", "data": {"type": "dataset", "datasetId": big_dataset, "datasetKey": "x"}}
        ],
        execution_location={
            "type": "temporaryLauncher",
            "spec": {"cpus": 1, "memoryMebibytes": 512},
        },
    )
    assert "success" in res.get("result", {}), res
    state = client.model.get_model_state(
        model_id="dataset_checksum", state_id=res["result"]["success"]["stateId"]
    )
    keys = {d["key"]: d["data"] for d in state["result"]["data"]}
    expected = [np.float32(1.5), BIG, np.arange(3, dtype=np.int8)]
    assert np.frombuffer(keys["crc"], np.uint32).tolist() == [
        zlib.crc32(np.ascontiguousarray(a)) for a in expected
    ]
