"""States: commit makes a state visible and durable, abort leaves nothing, reads verify."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from launcher.store import db as db_module
from launcher.store.blobs import KeyWriter
from launcher.store.db import Database
from launcher.store.states import (
    CorruptBlob,
    PendingState,
    StateIsActive,
    StateKeyNotFound,
    StateNotFound,
    StateStore,
)


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path, Database(tmp_path / "launcher.db"))


def _commit(store: StateStore, model_id: str, keys: dict[str, bytes], name: str = "s") -> str:
    pending = store.begin(model_id, name)
    for key, data in keys.items():
        writer = pending.key_writer(key)
        writer.write(data)
        writer.finish()
    return pending.commit().id


def _files(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def test_committed_state_reads_back_its_keys_in_order(store: StateStore) -> None:
    state_id = _commit(store, "m", {"weights": b"w" * 10, "bias": b"", "cfg": b"{}"})
    record = store.get("m", state_id)
    assert [(k.key, k.byte_size) for k in record.keys] == [("weights", 10), ("bias", 0), ("cfg", 2)]
    with store.open_key("m", state_id, "weights") as reader:
        assert reader.byte_size == 10
        assert reader.read_all() == b"w" * 10
    with store.open_key("m", state_id, "bias") as reader:
        assert list(reader.chunks()) == []


def test_state_row_appears_only_after_commit(store: StateStore, tmp_path: Path) -> None:
    pending = store.begin("m", "s")
    writer = pending.key_writer("k")
    writer.write(b"abc" * 30000)  # over the inline size: a file
    writer.finish()
    with pytest.raises(StateNotFound):
        store.get("m", pending.state_id)
    assert store.list("m") == []
    assert not (tmp_path / "states" / pending.state_id).exists()
    pending.commit()
    assert store.get("m", pending.state_id).name == "s"
    assert (tmp_path / "states" / pending.state_id).is_dir()


def test_first_state_becomes_active_later_ones_do_not(store: StateStore) -> None:
    assert store.active_state_id("m") is None
    first = _commit(store, "m", {"k": b"1"})
    second = _commit(store, "m", {"k": b"2"})
    assert store.active_state_id("m") == first
    assert store.get("m").id == first
    store.set_active("m", second)
    assert store.get("m").id == second


def test_abort_removes_every_file(store: StateStore, tmp_path: Path) -> None:
    pending = store.begin("m", "s")
    done = pending.key_writer("done")
    done.write(b"x" * 1000)
    done.finish()
    pending.key_writer("half").write(b"y" * 10)
    pending.abort()
    pending.abort()
    assert _files(tmp_path / "tmp") == []
    assert _files(tmp_path / "states") == []
    with pytest.raises(StateNotFound):
        store.get("m", pending.state_id)


def test_leaving_with_block_without_commit_aborts(store: StateStore, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), store.begin("m", "s") as pending:
        pending.key_writer("k").write(b"data")
        raise RuntimeError("model failed")
    assert _files(tmp_path / "tmp") == []


def test_failed_row_insert_leaves_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every connection (the group commit's writer too) gives up on a lock after 50 ms.
    monkeypatch.setattr(db_module, "BUSY_TIMEOUT_MS", 50)
    db = Database(tmp_path / "launcher.db")
    store = StateStore(tmp_path, db)
    pending = store.begin("m", "s")
    writer = pending.key_writer("k")
    writer.write(b"abc")
    writer.finish()
    # A database failure at commit time: another connection holds the write lock.
    blocker = sqlite3.connect(tmp_path / "launcher.db", timeout=0)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            pending.commit()
    finally:
        blocker.rollback()
        blocker.close()
    assert _files(tmp_path / "tmp") == []
    assert _files(tmp_path / "states") == []
    with pytest.raises(StateNotFound):
        store.get("m", pending.state_id)


def test_commit_refuses_unfinished_keys(store: StateStore) -> None:
    pending = store.begin("m", "s")
    pending.key_writer("open").write(b"x")
    with pytest.raises(ValueError, match="not finished: 'open'"):
        pending.commit()
    pending.abort()


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (["a", "a"], "provided twice"),
        ([""], "non-empty string"),
        ([f"k{i}" for i in range(101)], "at most 100 keys"),
    ],
)
def test_bad_keys_are_refused(store: StateStore, keys: list[str], message: str) -> None:
    pending = store.begin("m", "s")
    with pytest.raises(ValueError, match=message):
        for key in keys:
            pending.key_writer(key)
    pending.abort()


def test_key_writer_refuses_write_after_finish(store: StateStore) -> None:
    pending = store.begin("m", "s")
    writer = pending.key_writer("k")
    writer.finish()
    with pytest.raises(ValueError, match="already finished"):
        writer.write(b"more")
    with pytest.raises(ValueError, match="already finished"):
        writer.finish()
    pending.abort()


@pytest.mark.parametrize("state_id", ["", "../x", "a/b", "a.b", "-x", "x" * 65])
def test_bad_state_ids_are_refused(store: StateStore, state_id: str) -> None:
    with pytest.raises(ValueError, match="invalid state id"):
        store.begin("m", "s", state_id=state_id)


def test_reusing_a_state_id_is_refused(store: StateStore) -> None:
    pending = store.begin("m", "s", state_id="s-fixed")
    with pytest.raises(ValueError, match="already being created"):
        store.begin("m", "s", state_id="s-fixed")
    pending.commit()
    with pytest.raises(ValueError, match="already exists"):
        store.begin("m", "s", state_id="s-fixed")


def test_new_state_ids_are_unique_and_url_safe(store: StateStore) -> None:
    ids = {store.new_state_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(i.startswith("s-") and len(i) == 22 and i[2:].isalnum() for i in ids)


def test_flipped_byte_is_detected_on_read(store: StateStore, tmp_path: Path) -> None:
    state_id = _commit(store, "m", {"k": bytes(range(256)) * 1000})  # over the inline size
    (path,) = (tmp_path / "states" / state_id).iterdir()
    with open(path, "r+b") as f:
        f.seek(1234)
        byte = f.read(1)
        f.seek(1234)
        f.write(bytes([byte[0] ^ 1]))
    with store.open_key("m", state_id, "k") as reader, pytest.raises(CorruptBlob, match="sha256"):
        for _ in reader.chunks(4096):
            pass


def test_truncated_file_is_detected_on_read(store: StateStore, tmp_path: Path) -> None:
    state_id = _commit(store, "m", {"k": b"abcdef" * 20000})
    (path,) = (tmp_path / "states" / state_id).iterdir()
    os.truncate(path, 3)
    with store.open_key("m", state_id, "k") as reader, pytest.raises(CorruptBlob, match="size 3"):
        reader.read_all()


def test_missing_state_and_key_are_reported(store: StateStore) -> None:
    state_id = _commit(store, "m", {"k": b"1"})
    with pytest.raises(StateNotFound) as e:
        store.get("m", "s-nope")
    assert e.value.code == "state_not_found"
    with pytest.raises(StateNotFound):
        store.get("other-model", state_id)
    with pytest.raises(StateNotFound, match="has no active state"):
        store.get("other-model")
    with pytest.raises(StateKeyNotFound) as k:
        store.open_key("m", state_id, "missing")
    assert (k.value.code, k.value.key) == ("state_key_not_found", "missing")
    with pytest.raises(StateNotFound):
        store.open_key("other-model", state_id, "k")


def test_rename_changes_the_name(store: StateStore) -> None:
    state_id = _commit(store, "m", {}, name="old")
    store.rename("m", state_id, "new")
    assert store.get("m", state_id).name == "new"
    with pytest.raises(StateNotFound):
        store.rename("other", state_id, "x")


def test_set_active_refuses_another_models_state(store: StateStore) -> None:
    state_id = _commit(store, "m", {})
    with pytest.raises(StateNotFound):
        store.set_active("other", state_id)


def test_delete_refuses_the_active_state(store: StateStore) -> None:
    active = _commit(store, "m", {"k": b"1"})
    with pytest.raises(StateIsActive) as e:
        store.delete("m", active)
    assert e.value.code == "state_is_active"
    assert store.get("m", active).id == active


def test_delete_removes_row_and_files(store: StateStore, tmp_path: Path) -> None:
    _commit(store, "m", {"k": b"1"})
    doomed = _commit(store, "m", {"k": b"2"})
    store.delete("m", doomed)
    with pytest.raises(StateNotFound):
        store.get("m", doomed)
    assert not (tmp_path / "states" / doomed).exists()
    assert _files(tmp_path / "tmp") == []
    with pytest.raises(StateNotFound):
        store.delete("m", doomed)


def test_open_reader_survives_delete(store: StateStore) -> None:
    _commit(store, "m", {"k": b"1"})
    doomed = _commit(store, "m", {"k": b"payload" * 1000})
    with store.open_key("m", doomed, "k") as reader:
        store.delete("m", doomed)
        assert reader.read_all() == b"payload" * 1000


def test_list_and_to_json_give_the_contract_shape(store: StateStore) -> None:
    pending = store.begin("m", "first", mounted_models=[{"modelId": "other"}])
    writer = pending.key_writer("k")
    writer.write(b"abc")
    writer.finish()
    pending.commit()
    _commit(store, "m", {}, name="second")
    _commit(store, "n", {}, name="elsewhere")
    records = store.list("m")
    assert [r.name for r in records] == ["first", "second"]
    shape = records[0].to_json()
    assert shape == {
        "id": records[0].id,
        "name": "first",
        "createdAt": records[0].created_at,
        "beingDeleted": False,
        "state": [{"key": "k", "byteSize": 3}],
        "mountedModels": [{"modelId": "other"}],
        "trainingOperations": [],
    }


def test_reconcile_removes_leftovers_and_keeps_committed(store: StateStore, tmp_path: Path) -> None:
    kept = _commit(store, "m", {"k": b"keep" * 20000})
    unfinished: PendingState = store.begin("m", "s")
    unfinished.key_writer("k").write(b"partial" * 20000)
    (tmp_path / "states" / "s-orphan").mkdir()
    (tmp_path / "states" / "s-orphan" / "k000").write_bytes(b"orphan")
    store.reconcile()
    assert _files(tmp_path / "tmp") == []
    assert sorted(p.name for p in (tmp_path / "states").iterdir()) == [kept]
    with store.open_key("m", kept, "k") as reader:
        assert reader.read_all() == b"keep" * 20000


def test_concurrent_commits_from_threads_make_exactly_one_active(store: StateStore) -> None:
    made: list[str] = []

    def create(i: int) -> None:
        made.append(_commit(store, "m", {"k": str(i).encode()}, name=f"s{i}"))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.id for r in store.list("m")) == sorted(made)
    assert store.active_state_id("m") in made
    for state_id in made:
        with store.open_key("m", state_id, "k") as reader:
            assert reader.read_all() == store.get("m", state_id).name[1:].encode()


def test_key_larger_than_the_limit_is_refused(tmp_path: Path) -> None:
    writer = KeyWriter("k", tmp_path / "k", max_bytes=10)
    writer.write(b"x" * 6)
    with pytest.raises(ValueError, match="larger than 10 bytes"):
        writer.write(b"x" * 5)
    writer.write(b"x" * 4)
    assert writer.finish().byte_size == 10


def test_chunk_size_must_be_positive(store: StateStore) -> None:
    state_id = _commit(store, "m", {"k": b"x"})
    with store.open_key("m", state_id, "k") as reader, pytest.raises(ValueError, match="positive"):
        next(reader.chunks(0))


def test_small_keys_are_committed_inline_without_files(store: StateStore, tmp_path: Path) -> None:
    state_id = _commit(store, "m", {"small": b"x" * 100, "empty": b""})
    assert not (tmp_path / "states" / state_id).exists()
    with store.open_key("m", state_id, "small") as reader:
        assert reader.read_all() == b"x" * 100
        assert os.pread(reader.fd, 10, 0) == b"x" * 10
    store.set_active("m", _commit(store, "m", {"other": b"y"}))
    store.delete("m", state_id)
    with pytest.raises(StateNotFound):
        store.get("m", state_id)


def test_inline_and_file_keys_mix_in_one_state(store: StateStore, tmp_path: Path) -> None:
    big = bytes(range(256)) * 1024
    state_id = _commit(store, "m", {"small": b"s", "big": big})
    assert len(list((tmp_path / "states" / state_id).iterdir())) == 1
    with store.open_key("m", state_id, "big") as reader:
        assert reader.read_all() == big
    with store.open_key("m", state_id, "small") as reader:
        assert reader.read_all() == b"s"


def test_a_fresh_state_makes_its_work_folder_only_for_a_key_that_needs_a_file(
    store: StateStore, tmp_path: Path
) -> None:
    work_root = tmp_path / "tmp" / "states"
    inline = store.begin("m", "small", store.new_state_id(), fresh=True)
    writer = inline.key_writer("a")
    writer.write(b"tiny")
    writer.finish()
    assert not (work_root / inline.state_id).exists()  # no folder for inline keys
    record = inline.commit()
    assert store.open_key("m", record.id, "a").read_all() == b"tiny"
    big = store.begin("m", "big", store.new_state_id(), fresh=True)
    writer = big.key_writer("b")
    writer.write(b"x" * (200 << 10))  # over the inline size: a file, in the folder made now
    assert (work_root / big.state_id).is_dir()
    writer.finish()
    record = big.commit()
    assert not (work_root / big.state_id).exists()
    assert store.open_key("m", record.id, "b").read_all() == b"x" * (200 << 10)
    aborted = store.begin("m", "gone", store.new_state_id(), fresh=True)
    aborted.key_writer("c").write(b"y" * (200 << 10))
    aborted.abort()
    assert not (work_root / aborted.state_id).exists()
