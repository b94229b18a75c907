"""AddEntries appends to the dataset's index (issue 12 item 9): one index file grows by what
each add adds, older versions stay readable, and what a crashed add left is overwritten."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.store.datasets import DatasetStore, EntryRange, KeyDef, files
from launcher.store.db import Database
from tests.support.datasets import tensors


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DatasetStore]:
    db = Database(tmp_path / "launcher.db")
    yield DatasetStore(tmp_path, db)
    db.close()


def _add(store: DatasetStore, dataset_id: str, *values: int) -> str:
    data = tensors(*values)
    pending = store.begin_add(dataset_id, [("x", len(data))])
    pending.write(data)
    return pending.commit()


def _index_files(store: DatasetStore, dataset_id: str) -> list[Path]:
    return sorted((store.dir / dataset_id).glob("*.idx"))


def test_many_small_adds_append_to_one_index_file(store: DatasetStore) -> None:
    dataset_id = store.create("d", "", [KeyDef("x")]).id
    _add(store, dataset_id, 0)
    (first,) = _index_files(store, dataset_id)
    inode = first.stat().st_ino
    for i in range(1, 200):
        _add(store, dataset_id, i)
    (last,) = _index_files(store, dataset_id)
    assert last.stat().st_ino == inode  # the same file, grown: never rewritten
    assert store.get(dataset_id).entries == 200
    source = store.open_param(dataset_id, "x", "p")
    try:
        assert [source.read(i) for i in range(source.amount)] == [tensors(i) for i in range(200)]
    finally:
        source.close()


def test_a_reader_of_an_older_version_keeps_its_entries(store: DatasetStore) -> None:
    dataset_id = store.create("d", "", [KeyDef("x")]).id
    _add(store, dataset_id, 1, 2)
    before = store.read_entries(dataset_id, EntryRange(0, 2))
    _add(store, dataset_id, 3)
    try:
        parts = [p for batch in before.batches() for p in batch]
        assert len(parts) >= 1
    finally:
        before.close()
    after = store.open_param(dataset_id, "x", "p")
    assert after.amount == 3
    after.close()


def test_records_of_an_add_that_never_committed_are_overwritten(store: DatasetStore) -> None:
    dataset_id = store.create("d", "", [KeyDef("x")]).id
    _add(store, dataset_id, 1)
    info = store.get(dataset_id)
    (path,) = _index_files(store, dataset_id)
    with open(path, "ab") as f:  # a crash between appending records and committing them
        f.write(b"\xff" * 16 * 5)
    assert store.get(dataset_id).entries == 1
    _add(store, dataset_id, 2)
    source = store.open_param(dataset_id, "x", "p")
    try:
        assert [source.read(i) for i in range(source.amount)] == [tensors(1), tensors(2)]
    finally:
        source.close()
    assert files.index_path(store.dir / dataset_id, info.version_id).exists() is False
