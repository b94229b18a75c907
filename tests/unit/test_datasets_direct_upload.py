"""Uploads written straight into a dataset's data files (no staging copy) beside other writers.

The first upload of a dataset reserves each key's range past the committed end; uploads that
start meanwhile are staged and, when they commit first, land past the reserved range; entry
removal meanwhile leaves the reserved key's file alone. Every combination keeps each version's
entries exactly, and an aborted reserved upload leaves nothing past the committed end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.store.datasets import DatasetStore, EntryRange, KeyDef
from launcher.store.db import Database
from tests.support.datasets import tensors


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DatasetStore]:
    db = Database(tmp_path / "launcher.db")
    yield DatasetStore(tmp_path, db)
    db.close()


def entries(store: DatasetStore, dataset_id: str, key: str) -> list[bytes]:
    source = store.open_param(dataset_id, key, "p")
    try:
        return [source.read(i) for i in range(source.amount)]
    finally:
        source.close()


def data_size(store: DatasetStore, dataset_id: str) -> int:
    return (store.dir / dataset_id / "key0.0.data").stat().st_size


def test_a_staged_upload_committed_during_a_direct_one_lands_past_its_range(
    store: DatasetStore,
) -> None:
    dataset_id = store.create("d", "", [KeyDef("x")]).id
    first = tensors(1, 2)
    direct = store.begin_add(dataset_id, [("x", len(first))])
    direct.write(first[:5])  # half-way when the other upload commits
    second = tensors(7)
    staged = store.begin_add(dataset_id, [("x", len(second))])
    staged.write(second)
    staged.commit()
    assert entries(store, dataset_id, "x") == [tensors(7)]
    direct.write(first[5:])
    direct.commit()
    assert entries(store, dataset_id, "x") == [tensors(7), tensors(1), tensors(2)]
    assert store.get(dataset_id).byte_size == len(first) + len(second)
    # The next upload reserves again, after everything committed.
    third = tensors(9)
    again = store.begin_add(dataset_id, [("x", len(third))])
    again.write(third)
    again.commit()
    assert entries(store, dataset_id, "x")[-1] == tensors(9)
    assert data_size(store, dataset_id) == len(first) + len(second) + len(third)


def test_an_aborted_direct_upload_leaves_nothing_past_the_committed_end(
    store: DatasetStore,
) -> None:
    dataset_id = store.create("d", "", [KeyDef("x")]).id
    kept = tensors(1)
    pending = store.begin_add(dataset_id, [("x", len(kept))])
    pending.write(kept)
    pending.commit()
    aborted = store.begin_add(dataset_id, [("x", 1000)])
    aborted.write(tensors(5, 6))
    aborted.abort()
    assert data_size(store, dataset_id) == len(kept)
    assert entries(store, dataset_id, "x") == [kept]


def test_a_refused_direct_upload_is_cut_off_and_the_next_one_reserves_again(
    store: DatasetStore,
) -> None:
    dataset_id = store.create("d", "", [KeyDef("x")]).id
    short = store.begin_add(dataset_id, [("x", 100)])
    short.write(tensors(3))
    with pytest.raises(Exception, match="ended after"):
        short.commit()
    assert data_size(store, dataset_id) == 0
    pending = store.begin_add(dataset_id, [("x", len(tensors(4)))])
    pending.write(tensors(4))
    pending.commit()
    assert entries(store, dataset_id, "x") == [tensors(4)]


def test_removing_entries_during_a_direct_upload_keeps_both(tmp_path: Path) -> None:
    db = Database(tmp_path / "launcher.db")
    store = DatasetStore(tmp_path, db, compact_min_garbage=1)  # compact at any garbage
    try:
        dataset_id = store.create("d", "", [KeyDef("x")]).id
        old = tensors(1, 2, 3)
        pending = store.begin_add(dataset_id, [("x", len(old))])
        pending.write(old)
        pending.commit()
        new = tensors(4)
        direct = store.begin_add(dataset_id, [("x", len(new))])
        direct.write(new)
        store.remove_entries(dataset_id, EntryRange(0, 2))
        direct.commit()
        assert entries(store, dataset_id, "x") == [tensors(3), tensors(4)]
        # With the upload ended, the next removal compacts the key's file again.
        store.remove_entries(dataset_id, [0])
        assert entries(store, dataset_id, "x") == [tensors(4)]
        assert not (store.dir / dataset_id / "key0.0.data").exists()
    finally:
        db.close()
