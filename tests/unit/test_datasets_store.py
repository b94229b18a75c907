"""DatasetStore directly: createState snapshots (open_param) and durability on disk."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from launcher.errors import RequestError
from launcher.params import ParamSource
from launcher.store.datasets import DatasetStore, EntryRange, KeyDef
from launcher.store.db import Database
from runtime.tensor import serialize
from tests.support.datasets import tensors


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DatasetStore]:
    db = Database(tmp_path / "launcher.db")
    yield DatasetStore(tmp_path, db)
    db.close()


def add(store: DatasetStore, dataset_id: str, keys: dict[str, bytes]) -> str:
    pending = store.begin_add(dataset_id, [(k, len(v)) for k, v in keys.items()])
    for data in keys.values():
        pending.write(data)
    return pending.commit()


def read_all(source: ParamSource) -> list[bytes]:
    return [source.read(i) for i in range(source.amount)]


def test_open_param_reads_every_entry_of_the_key_in_order(store: DatasetStore) -> None:
    dataset_id = store.create("d", "", [KeyDef("x"), KeyDef("y")]).id
    add(store, dataset_id, {"x": tensors(1, 2), "y": tensors("a", "b")})
    add(store, dataset_id, {"y": tensors("c"), "x": tensors(3)})
    source = store.open_param(dataset_id, "y", "param")
    try:
        assert source.name == "param"
        assert source.offsets.dtype == np.uint64 and source.lengths.dtype == np.uint64
        assert read_all(source) == [tensors("a"), tensors("b"), tensors("c")]
        assert source.total_byte_size == len(tensors("a", "b", "c"))
    finally:
        source.close()


def test_open_param_skips_entries_where_an_optional_key_is_absent(store: DatasetStore) -> None:
    dataset_id = store.create("d", "", [KeyDef("x"), KeyDef("note", required=False)]).id
    add(store, dataset_id, {"x": tensors(1)})
    add(store, dataset_id, {"x": tensors(2), "note": tensors("n")})
    source = store.open_param(dataset_id, "note", "p")
    assert read_all(source) == [tensors("n")]
    source.close()


def test_open_param_is_unchanged_by_later_removes_adds_and_delete(store: DatasetStore) -> None:
    dataset_id = store.create("d", "", [KeyDef("x")]).id
    add(store, dataset_id, {"x": tensors(*range(10))})
    source = store.open_param(dataset_id, "x", "p")
    store.remove_entries(dataset_id, EntryRange(0, 5))
    add(store, dataset_id, {"x": tensors(*range(100, 120))})
    later = store.open_param(dataset_id, "x", "p")
    store.delete(dataset_id)
    try:
        assert read_all(source) == [tensors(v) for v in range(10)]
        assert read_all(later) == [tensors(v) for v in [*range(5, 10), *range(100, 120)]]
        assert not (store.dir / dataset_id).exists()
    finally:
        source.close()
        later.close()


def test_open_param_of_unknown_dataset_or_key_is_refused(store: DatasetStore) -> None:
    dataset_id = store.create("d", "", [KeyDef("x")]).id
    missing = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(RequestError) as caught:
        store.open_param(missing, "x", "p")
    assert caught.value.to_json() == {"code": "dataset_not_found", "datasetId": missing}
    with pytest.raises(RequestError) as caught:
        store.open_param(dataset_id, "nope", "p")
    assert caught.value.to_json() == {
        "code": "dataset_key_not_found",
        "datasetId": dataset_id,
        "datasetKey": "nope",
    }


def test_bytes_of_an_add_that_never_committed_are_discarded(store: DatasetStore) -> None:
    dataset_id = store.create("d", "", [KeyDef("x")]).id
    add(store, dataset_id, {"x": tensors(1)})
    # A crash between appending and committing leaves bytes past the committed end.
    data_file = next((store.dir / dataset_id).glob("*.data"))
    with open(data_file, "ab") as f:
        f.write(b"\xffgarbage")
    add(store, dataset_id, {"x": tensors(2)})
    source = store.open_param(dataset_id, "x", "p")
    assert read_all(source) == [tensors(1), tensors(2)]
    assert os.path.getsize(data_file) == len(tensors(1, 2))
    source.close()


def test_an_aborted_add_leaves_no_files_behind(store: DatasetStore) -> None:
    dataset_id = store.create("d", "", [KeyDef("x")]).id
    pending = store.begin_add(dataset_id, [("x", 100)])
    pending.write(tensors(1))
    pending.abort()
    info = store.get(dataset_id)
    assert (info.entries, info.byte_size) == (0, 0)
    assert sorted(p.name for p in (store.dir / dataset_id).iterdir()) == ["key0.0.data"]
    assert list((store.dir / ".staging").iterdir()) == []


def test_datasets_survive_reopening_the_store(tmp_path: Path, store: DatasetStore) -> None:
    dataset_id = store.create("d", "kept", [KeyDef("x")]).id
    version = add(store, dataset_id, {"x": tensors(1, 2)})
    db = Database(tmp_path / "launcher.db")
    reopened = DatasetStore(tmp_path, db)
    info = reopened.get(dataset_id)
    assert (info.description, info.entries, info.version_id) == ("kept", 2, version)
    snapshot = reopened.read_entries(dataset_id, [1])
    parts = [b for batch in snapshot.batches() for b in batch]
    assert [(p.key, p.index, p.start, p.data) for p in parts] == [("x", 1, 0, tensors(2))]
    snapshot.close()
    db.close()


def test_removing_most_entries_compacts_into_a_new_file(tmp_path: Path) -> None:
    db = Database(tmp_path / "launcher.db")
    store = DatasetStore(tmp_path, db, compact_min_garbage=0)
    dataset_id = store.create("d", "", [KeyDef("x"), KeyDef("y", required=False)]).id
    add(store, dataset_id, {"x": tensors(*range(10))})
    add(store, dataset_id, {"x": tensors(10), "y": tensors("y")})
    before = store.open_param(dataset_id, "x", "p")
    store.remove_entries(dataset_id, [0, 1, 2, 4, 5, 6, 7])
    after = store.open_param(dataset_id, "x", "p")
    try:
        names = sorted(p.name for p in (store.dir / dataset_id).iterdir() if p.suffix == ".data")
        assert names == ["key0.1.data", "key1.0.data"]  # y kept all its bytes: not compacted
        assert os.path.getsize(store.dir / dataset_id / "key0.1.data") == len(tensors(3, 8, 9, 10))
        assert read_all(after) == [tensors(v) for v in (3, 8, 9, 10)]
        assert read_all(before) == [tensors(v) for v in range(11)]
        add(store, dataset_id, {"x": tensors(11)})
        latest = store.open_param(dataset_id, "x", "p")
        assert read_all(latest) == [tensors(v) for v in (3, 8, 9, 10, 11)]
        latest.close()
        assert read_all(store.open_param(dataset_id, "y", "p")) == [tensors("y")]
    finally:
        before.close()
        after.close()
        db.close()


def test_reopening_the_store_sweeps_what_a_crash_left(tmp_path: Path, store: DatasetStore) -> None:
    dataset_id = store.create("d", "", [KeyDef("x")]).id
    add(store, dataset_id, {"x": tensors(1, 2)})
    dataset_dir = store.dir / dataset_id
    kept = sorted(p.name for p in dataset_dir.iterdir())
    for leftover in ("0f0f.idx", "0f0f.idx.tmp", "key0.1.data"):
        (dataset_dir / leftover).write_bytes(b"x")
    orphan = store.dir / "00000000-0000-4000-8000-000000000001"
    orphan.mkdir()
    (orphan / "key0.0.data").write_bytes(b"x")
    db = Database(tmp_path / "launcher.db")
    reopened = DatasetStore(tmp_path, db)
    assert sorted(p.name for p in dataset_dir.iterdir()) == kept
    assert not orphan.exists()
    assert read_all(reopened.open_param(dataset_id, "x", "p")) == [tensors(1), tensors(2)]
    db.close()


def test_concurrent_adds_all_land_and_readers_see_whole_adds(store: DatasetStore) -> None:
    dataset_id = store.create("d", "", [KeyDef("x"), KeyDef("y")]).id
    errors: list[BaseException] = []
    done = threading.Event()

    def writer(n: int) -> None:
        try:
            for i in range(10):
                value = n * 100 + i
                add(store, dataset_id, {"x": tensors(value, value), "y": tensors(-value, -value)})
        except BaseException as err:
            errors.append(err)

    def reader() -> None:
        try:
            while not done.is_set():
                source = store.open_param(dataset_id, "y", "p")
                assert source.amount % 2 == 0
                values = read_all(source)
                source.close()
                assert values[::2] == values[1::2]
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    done.set()
    watcher.join(timeout=60)
    assert errors == []
    assert store.get(dataset_id).entries == 80


@pytest.mark.parametrize("size", [1, 64, 65, 200])
def test_entries_are_read_in_parts_never_whole(
    tmp_path: Path, store: DatasetStore, size: int
) -> None:
    dataset_id = store.create("d", "", [KeyDef("x")]).id
    entry = serialize(np.arange(size, dtype=np.uint8))
    add(store, dataset_id, {"x": entry})
    snapshot = store.read_entries(dataset_id, [0])
    parts = [p for batch in snapshot.batches(part=64) for p in batch]
    snapshot.close()
    assert all(len(p.data) <= 64 and p.size == len(entry) for p in parts)
    assert [p.start for p in parts] == list(range(0, len(entry), 64))
    assert b"".join(p.data for p in parts) == entry
