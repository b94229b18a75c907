"""The Dataset gRPC service over a real Unix socket: every RPC's result and refusals."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from launcher.v1 import dataset_pb2 as pb
from tests.support.datasets import DatasetServer, error_of, key, tensors

MISSING = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DatasetServer]:
    s = DatasetServer(tmp_path)
    yield s
    s.close()


def test_created_dataset_is_listed_with_its_keys_and_no_entries(server: DatasetServer) -> None:
    res = server.stub.CreateDataset(
        pb.CreateDatasetRequest(
            name="images",
            description="some pictures",
            keys=[key("x", shape=[-1, 3], types=["f32", "f64"]), key("y", required=False)],
        )
    )
    info = server.info(res.result.dataset_id)
    assert (info.name, info.description, info.entries, info.byte_size) == (
        "images",
        "some pictures",
        0,
        0,
    )
    assert info.dataset_version_id == res.result.dataset_version_id
    assert [(k.name, k.required) for k in info.keys] == [("x", True), ("y", False)]
    assert list(info.keys[0].rules.shape) == [-1, 3] and info.keys[0].rules.has_shape
    assert list(info.keys[0].rules.allowed_types) == ["f32", "f64"]
    assert not info.keys[1].rules.has_shape


def test_added_entries_are_read_back_by_range_and_by_indexes(server: DatasetServer) -> None:
    dataset_id = server.create_ok([key("x"), key("label")])
    xs = [np.arange(i + 1, dtype=np.float32) for i in range(5)]
    labels = [np.array(i, dtype=np.int64) for i in range(5)]
    res = server.add(dataset_id, {"x": tensors(*xs), "label": tensors(*labels)})
    assert res.result.dataset_version_id
    info = server.info(dataset_id)
    assert info.entries == 5
    assert info.byte_size == len(tensors(*xs)) + len(tensors(*labels))
    assert info.dataset_version_id == res.result.dataset_version_id

    chunks = server.entries(dataset_id, range=pb.EntrySelection.Range(start=1, end=4))
    got = {(c.key, c.index): c.data for c in chunks}
    assert got == {
        **{("x", i): tensors(xs[i]) for i in (1, 2, 3)},
        **{("label", i): tensors(labels[i]) for i in (1, 2, 3)},
    }
    chunks = server.entries(dataset_id, indexes=pb.EntrySelection.Indexes(indexes=[4, 0]))
    assert [(c.key, c.index, c.data) for c in chunks if c.key == "x"] == [
        ("x", 4, tensors(xs[4])),
        ("x", 0, tensors(xs[0])),
    ]


def test_each_add_appends_in_order_and_makes_a_new_version(server: DatasetServer) -> None:
    dataset_id = server.create_ok([key("x")])
    first = server.add(dataset_id, {"x": tensors(1, 2)}).result.dataset_version_id
    second = server.add(dataset_id, {"x": tensors(3)}).result.dataset_version_id
    assert first != second
    chunks = server.entries(dataset_id, range=pb.EntrySelection.Range(start=0, end=3))
    assert [c.data for c in chunks] == [tensors(1), tensors(2), tensors(3)]


def test_an_optional_key_left_out_has_no_entries_to_read(server: DatasetServer) -> None:
    dataset_id = server.create_ok([key("x"), key("note", required=False)])
    assert server.add(dataset_id, {"x": tensors(1, 2)}).result.dataset_version_id
    assert server.add(dataset_id, {"x": tensors(3), "note": tensors("hi")}).result
    chunks = server.entries(dataset_id, range=pb.EntrySelection.Range(start=0, end=3))
    assert [(c.key, c.index) for c in chunks] == [("x", 0), ("x", 1), ("x", 2), ("note", 2)]


def test_removed_entries_disappear_and_later_ones_move_up(server: DatasetServer) -> None:
    dataset_id = server.create_ok([key("x")])
    server.add(dataset_id, {"x": tensors(*range(6))})
    before = server.info(dataset_id)
    res = server.stub.RemoveEntries(
        pb.RemoveEntriesRequest(
            dataset_id=dataset_id,
            entries=pb.EntrySelection(indexes=pb.EntrySelection.Indexes(indexes=[0, 3])),
        )
    )
    assert res.WhichOneof("outcome") == "result"
    after = server.info(dataset_id)
    assert after.entries == 4 and after.dataset_version_id != before.dataset_version_id
    assert after.byte_size == len(tensors(1, 2, 4, 5))
    chunks = server.entries(dataset_id, range=pb.EntrySelection.Range(start=0, end=4))
    assert [c.data for c in chunks] == [tensors(v) for v in (1, 2, 4, 5)]
    server.stub.RemoveEntries(
        pb.RemoveEntriesRequest(
            dataset_id=dataset_id,
            entries=pb.EntrySelection(range=pb.EntrySelection.Range(start=1, end=3)),
        )
    )
    chunks = server.entries(dataset_id, range=pb.EntrySelection.Range(start=0, end=2))
    assert [c.data for c in chunks] == [tensors(1), tensors(5)]


def test_deleted_dataset_is_gone_from_every_rpc(server: DatasetServer) -> None:
    dataset_id = server.create_ok([key("x")])
    server.add(dataset_id, {"x": tensors(1)})
    res = server.stub.DeleteDataset(pb.DatasetRef(dataset_id=dataset_id))
    assert res.WhichOneof("outcome") == "result"
    listed = server.stub.GetDatasets(pb.GetDatasetsRequest(ids=[dataset_id]))
    assert list(listed.result.datasets) == [] and listed.result.total == 0
    whole = pb.EntrySelection(range=pb.EntrySelection.Range(start=0, end=1))
    not_found = {"code": "dataset_not_found", "datasetId": dataset_id}
    for response in (
        server.stub.DeleteDataset(pb.DatasetRef(dataset_id=dataset_id)),
        server.add(dataset_id, {"x": tensors(1)}),
        server.stub.RemoveEntries(pb.RemoveEntriesRequest(dataset_id=dataset_id, entries=whole)),
        server.entries(dataset_id, range=whole.range)[0],
    ):
        assert {k: v for k, v in error_of(response).items() if k in not_found} == not_found


def test_unknown_dataset_id_is_dataset_not_found_naming_it(server: DatasetServer) -> None:
    err = error_of(server.stub.DeleteDataset(pb.DatasetRef(dataset_id=MISSING)))
    assert (err["code"], err["datasetId"]) == ("dataset_not_found", MISSING)
    err = error_of(server.add(MISSING, {"x": tensors(1)}))
    assert (err["code"], err["datasetId"]) == ("dataset_not_found", MISSING)


def test_get_datasets_pages_and_filters(server: DatasetServer) -> None:
    ids = [server.create_ok([key("x")]) for _ in range(5)]
    page = server.stub.GetDatasets(pb.GetDatasetsRequest(offset=1, limit=2)).result
    assert [d.id for d in page.datasets] == ids[1:3]
    assert (page.total, page.offset, page.limit) == (5, 1, 2)
    default = server.stub.GetDatasets(pb.GetDatasetsRequest()).result
    assert default.limit == 20 and len(default.datasets) == 5
    filtered = server.stub.GetDatasets(pb.GetDatasetsRequest(ids=[ids[4], MISSING, ids[0]]))
    assert sorted(d.id for d in filtered.result.datasets) == sorted([ids[0], ids[4]])
    assert filtered.result.total == 2


@pytest.mark.parametrize(
    ("request_", "path", "words"),
    [
        (pb.CreateDatasetRequest(name="", keys=[key("x")]), "name", "empty"),
        (pb.CreateDatasetRequest(name="n" * 300, keys=[key("x")]), "name", "at most"),
        (pb.CreateDatasetRequest(name="d"), "keys", "at least one key"),
        (pb.CreateDatasetRequest(name="d", keys=[key("")]), "keys[0].name", "empty"),
        (pb.CreateDatasetRequest(name="d", keys=[key("a"), key("a")]), "keys[1].name", "twice"),
        (
            pb.CreateDatasetRequest(name="d", keys=[key("a", types=["f32", "float"])]),
            "keys[0].rules.allowedTypes[1]",
            "unknown tensor type",
        ),
        (
            pb.CreateDatasetRequest(name="d", keys=[key("a", shape=[2, -3])]),
            "keys[0].rules.shape[1]",
            "-1 for any length",
        ),
        (
            pb.CreateDatasetRequest(
                name="d", keys=[pb.DatasetKey(name="a", rules=pb.KeyRules(shape=[2]))]
            ),
            "keys[0].rules.hasShape",
            "hasShape is false",
        ),
        (
            pb.CreateDatasetRequest(name="d", description="x" * 10_001, keys=[key("a")]),
            "description",
            "at most",
        ),
    ],
)
def test_bad_dataset_definitions_are_refused(
    server: DatasetServer, request_: pb.CreateDatasetRequest, path: str, words: str
) -> None:
    err = error_of(server.stub.CreateDataset(request_))
    assert (err["code"], err["parameterName"]) == ("invalid_parameter", path)
    assert words in err["reason"]
    assert server.stub.GetDatasets(pb.GetDatasetsRequest()).result.total == 0


def test_malformed_ids_are_refused_by_every_rpc(server: DatasetServer) -> None:
    bad = "../etc"
    whole = pb.EntrySelection(range=pb.EntrySelection.Range(start=0, end=0))
    responses = {
        "datasetId": [
            server.stub.DeleteDataset(pb.DatasetRef(dataset_id=bad)),
            server.stub.DeleteDataset(pb.DatasetRef()),
            server.add(bad, {"x": tensors(1)}),
            server.stub.RemoveEntries(pb.RemoveEntriesRequest(dataset_id=bad, entries=whole)),
            server.entries(bad, range=whole.range)[0],
        ],
        "filter.ids[1]": [server.stub.GetDatasets(pb.GetDatasetsRequest(ids=[MISSING, bad]))],
    }
    for path, answers in responses.items():
        for response in answers:
            err = error_of(response)
            assert (err["code"], err["parameterName"]) == ("invalid_parameter", path)
            assert "not a dataset id" in err["reason"]


def test_bad_page_and_selection_are_refused(server: DatasetServer) -> None:
    err = error_of(server.stub.GetDatasets(pb.GetDatasetsRequest(limit=5000)))
    assert (err["code"], err["parameterName"]) == ("invalid_parameter", "limit")
    dataset_id = server.create_ok([key("x")])
    server.add(dataset_id, {"x": tensors(1, 2, 3)})
    cases = [
        ({"range": pb.EntrySelection.Range(start=0, end=4)}, "entries.end", "past the"),
        ({"range": pb.EntrySelection.Range(start=3, end=1)}, "entries.start", "after end"),
        (
            {"indexes": pb.EntrySelection.Indexes(indexes=[0, 2**64 - 1])},
            "entries.indexes[1]",
            "out of range",
        ),
        ({}, "entries", "range"),
    ]
    for selection, path, words in cases:
        for response in (
            server.entries(dataset_id, **selection)[0],
            server.stub.RemoveEntries(
                pb.RemoveEntriesRequest(
                    dataset_id=dataset_id, entries=pb.EntrySelection(**selection)
                )
            ),
        ):
            err = error_of(response)
            assert (err["code"], err["parameterName"]) == ("invalid_parameter", path), err
            assert words in err["reason"]
    assert server.info(dataset_id).entries == 3


def test_a_chunk_before_the_header_breaks_the_stream(server: DatasetServer) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        server.stub.AddEntries(iter([pb.AddEntriesRequest(chunk=b"abc")]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "header" in caught.value.details()


def test_an_internal_fault_is_answered_as_unknown_with_a_log_id(
    server: DatasetServer, caplog: pytest.LogCaptureFixture
) -> None:
    dataset_id = server.create_ok([key("x")])
    server.add(dataset_id, {"x": tensors(1)})
    shutil.rmtree(server.store.dir / dataset_id)  # the disk lost the dataset's files
    err = error_of(server.entries(dataset_id, range=pb.EntrySelection.Range(start=0, end=1))[0])
    assert err["code"] == "unknown"
    log_id = err["reason"].rsplit(" ", 1)[-1]
    assert "log id" in err["reason"]
    assert any(log_id in record.getMessage() for record in caplog.records)


def test_entries_bigger_than_a_batch_stream_in_order_and_a_cancel_is_harmless(
    server: DatasetServer,
) -> None:
    dataset_id = server.create_ok([key("x")])
    big = [np.full(300_000, i, dtype=np.float32) for i in range(6)]  # 6 x 1.2 MB
    assert server.add(dataset_id, {"x": tensors(*big)}, chunk_size=1 << 20).result
    request = pb.GetEntriesRequest(
        dataset_id=dataset_id,
        entries=pb.EntrySelection(range=pb.EntrySelection.Range(start=0, end=6)),
    )
    assert [c.data for c in server.stub.GetEntries(request)] == [tensors(b) for b in big]
    call = server.stub.GetEntries(request)
    assert next(call).index == 0
    call.cancel()
    assert server.info(dataset_id).entries == 6
    assert len(list(server.stub.GetEntries(request))) == 6


def test_names_with_control_characters_are_refused(server: DatasetServer) -> None:
    err = error_of(server.create([key("a\nb")]))
    assert (err["code"], err["parameterName"]) == ("invalid_parameter", "keys[0].name")
    assert "control characters" in err["reason"]
