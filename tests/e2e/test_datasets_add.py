"""AddEntries refusals over a real socket: each rule, each malformed upload, and atomicity."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from launcher.v1 import dataset_pb2 as pb
from tests.support.datasets import DatasetServer, error_of, key, tensors

F32 = np.float32


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DatasetServer]:
    s = DatasetServer(tmp_path)
    yield s
    s.close()


@pytest.fixture
def dataset(server: DatasetServer) -> str:
    """Keys: image (f32 [-1, 2], required), label (i64 or i32 scalars), note (optional)."""
    dataset_id = server.create_ok(
        [
            key("image", shape=[-1, 2], types=["f32"]),
            key("label", shape=[], types=["i64", "i32"]),
            key("note", required=False),
        ]
    )
    good = server.add(
        dataset_id,
        {"image": tensors(np.zeros((1, 2), F32)), "label": tensors(np.int64(0))},
    )
    assert good.result.dataset_version_id
    return dataset_id


def images(*arrays: object) -> bytes:
    return tensors(*(np.asarray(a, dtype=F32) for a in arrays))


def labels(n: int) -> bytes:
    return tensors(*(np.int64(i) for i in range(n)))


def refused(server: DatasetServer, dataset_id: str, response: pb.AddEntriesResponse) -> dict:
    """The error, after checking the failed add changed nothing."""
    err = error_of(response)
    info = server.info(dataset_id)
    assert info.entries == 1, "a refused add must leave the dataset unchanged"
    chunks = server.entries(dataset_id, range=pb.EntrySelection.Range(start=0, end=1))
    assert [c.key for c in chunks] == ["image", "label"]
    return err


def test_valid_entries_of_any_wildcard_length_are_accepted(
    server: DatasetServer, dataset: str
) -> None:
    res = server.add(
        dataset,
        {
            "image": images(np.ones((3, 2)), np.ones((0, 2))),
            "label": tensors(np.int32(1), np.int64(2)),
            "note": tensors("a", b"b"),
        },
    )
    assert res.result.dataset_version_id
    assert server.info(dataset).entries == 3


@pytest.mark.parametrize(
    ("image", "path", "words"),
    [
        (images(np.ones((2, 2)), np.ones((2, 3))), "keys[0].data[1]", "shape [2, 3]"),
        (images(np.ones((2, 2)), np.ones(2)), "keys[0].data[1]", "shape rule [-1, 2]"),
        (images(np.ones((1, 2))) + tensors(np.ones((1, 2))), "keys[0].data[1]", "type f64"),
    ],
)
def test_a_tensor_breaking_a_rule_is_refused_naming_it(
    server: DatasetServer, dataset: str, image: bytes, path: str, words: str
) -> None:
    err = refused(server, dataset, server.add(dataset, {"image": image, "label": labels(2)}))
    assert (err["code"], err["parameterName"]) == ("invalid_parameter", path)
    assert words in err["reason"]


def test_a_rule_broken_in_the_second_key_names_that_key(
    server: DatasetServer, dataset: str
) -> None:
    label = tensors(np.int64(1), np.float32(2))
    err = refused(
        server, dataset, server.add(dataset, {"image": images(*[[[0, 0]]] * 2), "label": label})
    )
    assert err["parameterName"] == "keys[1].data[1]"
    assert "not allowed (allowedTypes: i64, i32)" in err["reason"]


def test_a_missing_required_key_is_refused(server: DatasetServer, dataset: str) -> None:
    err = refused(server, dataset, server.add(dataset, {"image": images([[1, 2]])}))
    assert (err["code"], err["parameterName"]) == ("invalid_parameter", "keys")
    assert "required key 'label'" in err["reason"]


@pytest.mark.parametrize(
    ("names", "path", "words"),
    [
        (["image", "label", "nope"], "keys[2].key", "no key 'nope'"),
        (["label", "label"], "keys[1].key", "twice"),
    ],
)
def test_unknown_or_repeated_keys_are_refused(
    server: DatasetServer, dataset: str, names: list[str], path: str, words: str
) -> None:
    header = pb.AddEntriesHeader(
        dataset_id=dataset, keys=[pb.AddEntriesHeader.Key(key=n, byte_size=0) for n in names]
    )
    err = refused(
        server, dataset, server.stub.AddEntries(iter([pb.AddEntriesRequest(header=header)]))
    )
    assert (err["code"], err["parameterName"]) == ("invalid_parameter", path)
    assert words in err["reason"]


def test_keys_with_unequal_tensor_counts_are_refused(server: DatasetServer, dataset: str) -> None:
    add = server.add(dataset, {"image": images([[1, 2]], [[3, 4]]), "label": labels(3)})
    err = refused(server, dataset, add)
    assert (err["code"], err["parameterName"]) == ("invalid_parameter", "keys[1].data")
    assert "has 3 tensors but key 'image' has 2" in err["reason"]


def test_a_truncated_tensor_is_refused(server: DatasetServer, dataset: str) -> None:
    image = images([[1, 2]], [[3, 4]])[:-3]
    err = refused(server, dataset, server.add(dataset, {"image": image, "label": labels(2)}))
    assert (err["code"], err["parameterName"]) == ("invalid_parameter", "keys[0].data[1]")
    assert "not a valid tensor" in err["reason"]


def test_bytes_that_are_not_a_tensor_are_refused(server: DatasetServer, dataset: str) -> None:
    image = images([[1, 2]]) + bytes([99, 0]) + images([[1, 2]])
    err = refused(server, dataset, server.add(dataset, {"image": image, "label": labels(2)}))
    assert (err["code"], err["parameterName"]) == ("invalid_parameter", "keys[0].data[1]")
    assert "not a valid tensor" in err["reason"] and "99" in err["reason"]


def test_an_upload_shorter_than_announced_is_refused(server: DatasetServer, dataset: str) -> None:
    image, label = images([[1, 2]]), labels(1)
    add = server.add(dataset, {"image": image, "label": label}, sizes={"label": len(label) + 5})
    err = refused(server, dataset, add)
    assert (err["code"], err["parameterName"]) == ("invalid_parameter", "keys[1].data")
    assert f"ended after {len(label)} of the {len(label) + 5} bytes" in err["reason"]


def test_an_upload_longer_than_announced_is_refused(server: DatasetServer, dataset: str) -> None:
    image, label = images([[1, 2]]), labels(1)
    add = server.add(
        dataset, {"image": image, "label": label + b"extra"}, sizes={"label": len(label)}
    )
    err = refused(server, dataset, add)
    assert (err["code"], err["parameterName"]) == ("invalid_parameter", "chunk")
    assert "more bytes than announced" in err["reason"]
