"""SnapshotStore in-process: read-only frozen copy, hard-linked state that outlives the state,
crash leftovers removed at start, and folders kept while a lease holds them."""

from __future__ import annotations

import gc
import os
import stat
from pathlib import Path

import pytest

from launcher.store.db import Database
from launcher.store.errors import StateNotFound
from launcher.store.snapshots import SnapshotNotFound, SnapshotStore
from launcher.store.states import StateStore


@pytest.fixture
def stores(tmp_path: Path) -> tuple[StateStore, SnapshotStore, Path]:
    db = Database(tmp_path / "launcher.db")
    states = StateStore(tmp_path, db)
    code = tmp_path / "code"
    (code / "pkg" / "__pycache__").mkdir(parents=True)
    (code / "main.py").write_text("model = {}\n")
    (code / "pkg" / "run.sh").write_text("#!/bin/sh\n")
    (code / "pkg" / "run.sh").chmod(0o755)
    (code / "pkg" / "__pycache__" / "x.pyc").write_bytes(b"")
    os.symlink("main.py", code / "link.py")
    return states, SnapshotStore(tmp_path, db, states), code


def commit(states: StateStore, model_id: str, **keys: bytes) -> str:
    pending = states.begin(model_id, "s")
    for key, data in keys.items():
        writer = pending.key_writer(key)
        writer.write(data)
        writer.finish()
    return pending.commit().id


def test_frozen_copy_is_read_only_and_state_outlives_deletion(
    stores: tuple[StateStore, SnapshotStore, Path],
) -> None:
    states, snapshots, code = stores
    big = os.urandom(200_000)  # stored in a file: hard-linked
    first = commit(states, "m", small=b"tiny", big=big)
    record = snapshots.create("m", "snap", code)
    frozen = record.code_dir
    assert sorted(p.name for p in frozen.rglob("*")) == ["link.py", "main.py", "pkg", "run.sh"]
    assert os.readlink(frozen / "link.py") == "main.py"
    assert stat.S_IMODE((frozen / "main.py").stat().st_mode) == 0o444
    assert stat.S_IMODE((frozen / "pkg" / "run.sh").stat().st_mode) == 0o555
    assert stat.S_IMODE(frozen.stat().st_mode) == 0o555
    second = commit(states, "m", other=b"x")
    states.set_active("m", second)
    states.delete("m", first)
    got = {}
    for key in record.keys:
        with record.open_key(key) as reader:
            got[key.key.key] = reader.read_all()
    assert got == {"small": b"tiny", "big": big}
    assert snapshots.get("m", record.id).state_id == first


def test_no_active_state_is_refused(stores: tuple[StateStore, SnapshotStore, Path]) -> None:
    _, snapshots, code = stores
    with pytest.raises(StateNotFound):
        snapshots.create("m", "snap", code)
    assert not list((code.parent / "tmp" / "snapshots").iterdir())


def test_reconcile_removes_crash_leftovers(stores: tuple[StateStore, SnapshotStore, Path]) -> None:
    states, snapshots, code = stores
    commit(states, "m", k=b"v")
    kept = snapshots.create("m", "kept", code)
    root = code.parent
    half = root / "tmp" / "snapshots" / "sn-half"
    (half / "code").mkdir(parents=True)
    (half / "code").chmod(0o555)
    orphan = root / "snapshots" / "sn-orphan"
    orphan.mkdir()
    snapshots.reconcile()
    assert not half.exists() and not orphan.exists()
    assert kept.code_dir.is_dir()


def test_lease_keeps_a_deleted_snapshots_folder(
    stores: tuple[StateStore, SnapshotStore, Path],
) -> None:
    states, snapshots, code = stores
    commit(states, "m", k=b"v")
    record = snapshots.create("m", "s", code)

    class Owner:
        pass

    owner = Owner()
    snapshots.acquire("m", record.id, owner)
    snapshots.delete("m", record.id)
    with pytest.raises(SnapshotNotFound):
        snapshots.get("m", record.id)
    assert record.code_dir.is_dir()
    del owner
    gc.collect()
    assert not record.folder.exists()
    with pytest.raises(SnapshotNotFound):
        snapshots.delete("m", record.id)


def test_the_owner_row_commits_with_the_snapshot_or_neither_remains(
    stores: tuple[StateStore, SnapshotStore, Path], tmp_path: Path
) -> None:
    """``then`` (the owner's row) runs inside the snapshot's transaction: a failure there
    leaves no snapshot (no row, no folder); a success commits both."""
    from launcher.auth.owners import SNAPSHOT, Owners

    states, snapshots, code = stores
    commit(states, "m", small=b"tiny")
    owners = Owners(snapshots._db)

    def failing(snapshot_id: str) -> None:
        owners.record(SNAPSHOT, snapshot_id, "team-a")
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        snapshots.create("m", "snap", code, failing)
    assert snapshots.list("m") == []
    assert not any((tmp_path / "snapshots").glob("sn-*"))
    assert owners.ids_of(SNAPSHOT, "team-a") == set()
    record = snapshots.create("m", "snap", code, lambda i: owners.record(SNAPSHOT, i, "team-a"))
    assert owners.tenant_of(SNAPSHOT, record.id) == "team-a"
    assert [r.id for r in snapshots.list("m")] == [record.id]


def test_page_reads_match_per_model_reads(
    stores: tuple[StateStore, SnapshotStore, Path],
) -> None:
    """GetModels reads a page's states, active states and snapshots in a few queries: the same
    records, in the same order, as reading model by model."""
    states, snapshots, code = stores
    for model_id in ("a", "b"):
        for i in range(3):
            commit(states, model_id, **{f"k{i}": b"v" * i, "z": b"last"})
        snapshots.create(model_id, "first", code)
        snapshots.create(model_id, "second", code)
    page = ["b", "a", "none"]
    assert states.list_many(page) == {m: states.list(m) for m in page}
    assert list(states.list_many(page)["a"][0].keys) == list(states.list("a")[0].keys)
    assert states.active_state_ids(page) == {
        m: s for m in page if (s := states.active_state_id(m)) is not None
    }
    assert snapshots.list_many(page) == {m: snapshots.list(m) for m in page}
    assert [len(snapshots.list_many(page)[m]) for m in page] == [2, 2, 0]
    assert states.list_many([]) == {} and snapshots.list_many([]) == {}
