"""Listing models (``GetModels``) keeps what it read of each folder, and the list of model ids,
only while inotify reports no change: every change made before a listing is seen by it."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.errors import ModelNotFound
from launcher.store.models import (
    Listed,
    ModelConfig,
    ModelConfigError,
    ModelReadError,
    ModelRegistry,
)
from tests.support.model_folders import named_model


class Counted:
    """A registry whose folder reads and ``models/`` listings are counted."""

    def __init__(self, models: Path, read_timeout: float = 10.0) -> None:
        self.registry = ModelRegistry(models, read_timeout=read_timeout)
        self.reads: list[tuple[str, bool]] = []
        self.listings = 0
        self.fail: set[str] = set()
        self.delay = 0.0
        load, list_ids = self.registry._load, self.registry.list_ids

        def counted_load(model_id: str, with_version: bool) -> ModelConfig:
            self.reads.append((model_id, with_version))
            time.sleep(self.delay)
            if model_id in self.fail:
                raise ModelReadError(f"cannot read {model_id}")
            return load(model_id, with_version)

        def counted_list() -> list[str]:
            self.listings += 1
            return list_ids()

        self.registry._load = counted_load  # type: ignore[method-assign]
        self.registry.list_ids = counted_list  # type: ignore[method-assign]

    def listing(self, *ids: str) -> dict[str, Listed]:
        return asyncio.run(self.registry.aload_many(list(ids)))

    def ids(self) -> list[str]:
        return asyncio.run(self.registry.alist_ids())

    def name(self, model_id: str) -> str:
        config = self.listing(model_id)[model_id]
        assert isinstance(config, ModelConfig), config
        return config.name


@pytest.fixture
def counted(models: Path) -> Iterator[Counted]:
    c = Counted(models)
    assert c.registry._watch.active, "inotify is available on the machines this runs on"
    yield c
    c.registry.close()


def test_unchanged_folders_are_listed_without_a_read(models: Path, counted: Counted) -> None:
    named_model(models, "a")
    named_model(models, "b")
    assert counted.listing("a", "b").keys() == {"a", "b"}
    assert counted.listing("a", "b").keys() == {"a", "b"}
    assert counted.reads == [("a", False), ("b", False)]  # without the code version


def test_model_toml_written_in_place_is_listed_at_once(models: Path, counted: Counted) -> None:
    folder = named_model(models, "a")
    assert counted.name("a") == "first"
    (folder / "model.toml").write_text('name = "second"\n')
    assert counted.name("a") == "second"


def test_refused_model_toml_is_kept_and_its_fix_seen_at_once(
    models: Path, counted: Counted
) -> None:
    folder = named_model(models, "a")
    (folder / "model.toml").unlink()
    os.mkfifo(folder / "model.toml")
    for _ in range(3):
        refused = counted.listing("a")["a"]
        assert isinstance(refused, ModelConfigError)
        assert "not a regular file" in str(refused)
    assert len(counted.reads) == 1
    (folder / "model.toml").unlink()
    (folder / "model.toml").write_text('name = "fixed"\n')
    assert counted.name("a") == "fixed"


def test_read_errors_are_not_kept(models: Path, counted: Counted) -> None:
    named_model(models, "a")
    counted.fail.add("a")
    assert isinstance(counted.listing("a")["a"], ModelReadError)
    counted.fail.clear()
    assert counted.name("a") == "first"
    assert len(counted.reads) == 2


def test_listed_entry_serves_no_job_and_a_jobs_entry_serves_listing(
    models: Path, counted: Counted
) -> None:
    named_model(models, "a")
    named_model(models, "b")
    counted.listing("a")
    config = asyncio.run(counted.registry.aload("a"))  # a job needs the code version: read
    assert config.code_version
    assert counted.reads == [("a", False), ("a", True)]
    counted.listing("a")
    asyncio.run(counted.registry.aload("b"))
    counted.listing("a", "b")
    assert counted.reads == [("a", False), ("a", True), ("b", True)]
    assert asyncio.run(counted.registry.aload("a")).code_version == config.code_version
    assert len(counted.reads) == 3  # the listing did not replace the job's entry


def test_model_ids_kept_until_models_folder_changes(models: Path, counted: Counted) -> None:
    named_model(models, "a")
    assert counted.ids() == ["a"]
    assert counted.ids() == ["a"]
    assert counted.listings == 1
    named_model(models, "b")
    assert counted.ids() == ["a", "b"]
    shutil.rmtree(models / "a")
    assert counted.ids() == ["b"]
    assert isinstance(counted.listing("a")["a"], ModelNotFound)
    (models / "b").rename(models / "c")
    assert counted.ids() == ["c"]
    assert counted.listings == 4


def test_model_ids_read_again_after_their_age(models: Path, counted: Counted) -> None:
    named_model(models, "a")
    counted.registry._watch.max_age = 0.05
    counted.ids()
    time.sleep(0.1)
    counted.ids()
    assert counted.listings == 2


def test_slow_folders_answer_a_read_error_in_time(models: Path) -> None:
    for model_id in ("a", "b", "c"):
        named_model(models, model_id)
    c = Counted(models, read_timeout=0.3)
    try:
        c.delay = 0.2
        start = time.monotonic()
        found = c.listing("a", "b", "c")
        assert time.monotonic() - start < 1.0
        assert isinstance(found["a"], ModelConfig)
        late = found["c"]
        assert isinstance(late, ModelReadError) and "longer than 0.3 s" in str(late)
        c.delay = 0.0
        time.sleep(0.5)  # the abandoned read has stopped
        assert isinstance(c.listing("c")["c"], ModelConfig)  # a late one is not kept
    finally:
        c.registry.close()


def test_change_during_a_listing_read_is_not_kept(models: Path, counted: Counted) -> None:
    folder = named_model(models, "a")
    reading, release = threading.Event(), threading.Event()
    load = counted.registry._load

    def slow(model_id: str, with_version: bool) -> ModelConfig:
        config = load(model_id, with_version)  # read before the change, kept after it
        reading.set()
        release.wait(5)
        return config

    counted.registry._load = slow  # type: ignore[method-assign]

    def change() -> None:
        reading.wait(5)
        (folder / "model.toml").write_text('name = "second"\n')
        release.set()

    changer = threading.Thread(target=change)
    changer.start()
    first = counted.listing("a")["a"]
    changer.join()
    counted.registry._load = load  # type: ignore[method-assign]
    assert isinstance(first, ModelConfig) and first.name == "first"
    assert counted.name("a") == "second"
