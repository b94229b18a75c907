"""A model's configuration is kept between jobs only while inotify reports its folder unchanged:
every change made before a job's lookup is seen by that lookup, whatever way it is made."""

from __future__ import annotations

import asyncio
import os
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.errors import ModelNotFound
from launcher.store import model_watch
from launcher.store.model_watch import FolderWatch
from launcher.store.models import ModelConfig, ModelRegistry
from tests.support.model_folders import named_model


class Counted:
    """A registry whose folder reads are counted."""

    def __init__(self, models: Path) -> None:
        self.registry = ModelRegistry(models)
        self.reads = 0
        load = self.registry._load

        def counted(model_id: str, with_version: bool) -> ModelConfig:
            self.reads += 1
            return load(model_id, with_version)

        self.registry._load = counted  # type: ignore[method-assign]

    def load(self, model_id: str) -> ModelConfig:
        return asyncio.run(self.registry.aload(model_id))


@pytest.fixture
def counted(models: Path) -> Iterator[Counted]:
    c = Counted(models)
    assert c.registry._watch.active, "inotify is available on the machines this runs on"
    yield c
    c.registry.close()


def test_unchanged_model_is_not_read_again(models: Path, counted: Counted) -> None:
    named_model(models, "m")
    first = counted.load("m")
    assert counted.load("m") == first
    assert counted.load("m") == first
    assert counted.reads == 1


def test_main_py_written_in_place_is_seen_at_once(models: Path, counted: Counted) -> None:
    folder = named_model(models, "m")
    before = counted.load("m").code_version
    with open(folder / "main.py", "r+") as f:  # same size: only the mtime tells
        f.write("x = 2\n")
    os.utime(folder / "main.py", ns=(1, 1))
    assert counted.load("m").code_version != before
    assert counted.reads == 2


def test_model_toml_replaced_by_rename_is_seen_at_once(models: Path, counted: Counted) -> None:
    folder = named_model(models, "m")
    assert counted.load("m").name == "first"
    (folder / "new.toml").write_text('name = "second"\n')
    os.replace(folder / "new.toml", folder / "model.toml")
    assert counted.load("m").name == "second"


def test_new_subfolder_and_file_in_it_are_seen(models: Path, counted: Counted) -> None:
    folder = named_model(models, "m")
    v1 = counted.load("m").code_version
    (folder / "pkg").mkdir()
    v2 = counted.load("m").code_version
    (folder / "pkg" / "util.py").write_text("y = 1\n")
    v3 = counted.load("m").code_version
    (folder / "pkg" / "util.py").write_text("y = 22\n")
    v4 = counted.load("m").code_version
    assert len({v1, v3, v4}) == 3 and v2 != v3
    assert counted.reads == 4


def test_deep_file_change_is_seen(models: Path, counted: Counted) -> None:
    folder = named_model(models, "m")
    deep = folder / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / "f.py").write_text("z = 1\n")
    before = counted.load("m").code_version
    assert counted.load("m").code_version == before and counted.reads == 1
    (deep / "f.py").write_text("z = 12345\n")
    assert counted.load("m").code_version != before


def test_model_folder_replaced_by_rename(models: Path, counted: Counted) -> None:
    named_model(models, "m")
    assert counted.load("m").name == "first"
    staging = models.parent / "staging"
    named_model(staging, "m", name="second")
    os.rename(models / "m", models.parent / "old")
    os.rename(staging / "m", models / "m")
    assert counted.load("m").name == "second"


def test_model_folder_link_swapped(models: Path, counted: Counted) -> None:
    named_model(models, "real-a", name="a")
    named_model(models, "real-b", name="b")
    (models / "m").symlink_to("real-a")
    assert counted.load("m").name == "a"
    (models / "tmp-link").symlink_to("real-b")
    os.replace(models / "tmp-link", models / "m")
    assert counted.load("m").name == "b"


def test_models_folder_link_swapped(tmp_path: Path) -> None:
    named_model(tmp_path / "set-a", "m", name="a")
    named_model(tmp_path / "set-b", "m", name="b")
    (tmp_path / "models").symlink_to("set-a")
    c = Counted(tmp_path / "models")
    try:
        assert c.load("m").name == "a"
        assert c.load("m").name == "a" and c.reads == 1
        (tmp_path / "tmp-link").symlink_to("set-b")
        os.replace(tmp_path / "tmp-link", tmp_path / "models")
        assert c.load("m").name == "b"
    finally:
        c.registry.close()


def test_unrelated_writes_beside_models_keep_the_entry(models: Path, counted: Counted) -> None:
    """The launcher root holds the database: its writes must not cost a read per job."""
    named_model(models, "m")
    counted.load("m")
    (models.parent / "launcher.db-wal").write_bytes(b"x" * 100)
    counted.load("m")
    assert counted.reads == 1


def test_another_model_changing_drops_only_that_model(models: Path, counted: Counted) -> None:
    named_model(models, "m")
    other = named_model(models, "other")
    counted.load("m")
    counted.load("other")
    (other / "main.py").write_text("x = 3\n")
    counted.load("m")
    assert counted.reads == 2
    counted.load("other")
    assert counted.reads == 3


def test_deleted_model_is_not_found(models: Path, counted: Counted) -> None:
    folder = named_model(models, "m")
    counted.load("m")
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    with pytest.raises(ModelNotFound):
        counted.load("m")


def test_entry_is_read_again_after_its_age(models: Path, counted: Counted) -> None:
    """What inotify cannot see (a network file system) is seen within MAX_AGE."""
    named_model(models, "m")
    counted.registry._watch.max_age = 0.05
    counted.load("m")
    counted.load("m")
    assert counted.reads == 1
    time.sleep(0.08)
    counted.load("m")
    assert counted.reads == 2


def test_change_during_the_read_is_not_kept(models: Path, counted: Counted) -> None:
    folder = named_model(models, "m")
    load = counted.registry._load
    changed = False

    def changing(model_id: str, with_version: bool) -> ModelConfig:
        nonlocal changed
        config = load(model_id, with_version)
        if not changed:
            changed = True
            (folder / "model.toml").write_text('name = "second"\n')
        return config

    counted.registry._load = changing  # type: ignore[method-assign]
    assert counted.load("m").name == "first"  # read before the change landed
    assert counted.load("m").name == "second"


def test_without_inotify_every_job_reads(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_watch, "_libc", lambda: None)
    named_model(models, "m")
    c = Counted(models)
    assert not c.registry._watch.active
    for _ in range(3):
        assert c.load("m").name == "first"
    assert c.reads == 3
    c.registry.close()


def test_model_needing_too_many_watches_is_read_every_time(
    models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_watch, "MAX_FOLDERS_PER_MODEL", 2)
    folder = named_model(models, "wide")
    for i in range(3):
        (folder / f"sub{i}").mkdir()
    named_model(models, "narrow")
    c = Counted(models)
    try:
        for _ in range(2):
            c.load("wide")
            c.load("narrow")
        assert c.reads == 3  # wide twice, narrow once
    finally:
        c.registry.close()


def test_no_watches_left_reads_every_time(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    named_model(models, "m")
    c = Counted(models)
    monkeypatch.setattr(model_watch, "MAX_WATCHES", len(c.registry._watch._owners))
    try:
        c.load("m")
        c.load("m")
        assert c.reads == 2
    finally:
        c.registry.close()


def test_overflow_and_garbled_events_drop_everything(models: Path) -> None:
    watch = FolderWatch(models)
    try:
        watch.store("m", "config", watch.epoch, time.monotonic())
        assert watch.lookup("m") == "config"
        watch._apply(struct.pack("iIII", -1, 0x4000, 0, 0))  # IN_Q_OVERFLOW
        assert watch.lookup("m") is None
        watch.store("m", "config", watch.epoch, time.monotonic())
        watch._apply(struct.pack("iIII", 12345, 0x2, 0, 64) + b"x")  # name cut short
        watch._apply(b"\x01\x02\x03")  # shorter than one event
        assert watch.lookup("m") == "config"
    finally:
        watch.close()


def test_store_after_an_event_is_refused(models: Path) -> None:
    watch = FolderWatch(models)
    try:
        epoch = watch.epoch
        (models / "x").mkdir()
        watch.store("m", "config", epoch, time.monotonic())
        assert watch.lookup("m") is None
    finally:
        watch.close()


def test_writes_beside_models_during_a_read_do_not_refuse_its_store(models: Path) -> None:
    """Every commit writes ``launcher.db`` beside ``models/``: a read under way is kept all the
    same (only a change that drops an entry refuses it)."""
    (models.parent / "launcher.db").write_bytes(b"")
    watch = FolderWatch(models)
    try:
        epoch = watch.epoch
        for i in range(3):
            (models.parent / "launcher.db").write_bytes(b"x" * i)
            (models.parent / "launcher.db-wal").write_bytes(b"y" * i)
        watch.store("m", "config", epoch, time.monotonic())
        assert watch.lookup("m") == "config"
        assert watch.epoch == epoch
    finally:
        watch.close()
