"""launcher/store/model_files.py: model files read without following, blocking or overreading,
parsed once per change; code versions that reuse unchanged directory listings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from launcher.store.model_files import (
    CodeVersions,
    FileCache,
    ModelReadError,
    check_regular_file,
)
from launcher.store.model_toml import ModelConfigError


def _counting_parse(calls: list[bytes]):  # type: ignore[no-untyped-def]
    def parse(raw: bytes) -> str:
        calls.append(raw)
        return raw.decode()

    return parse


def test_an_unchanged_file_is_parsed_once(tmp_path: Path) -> None:
    path = tmp_path / "model.toml"
    path.write_text("a")
    calls: list[bytes] = []
    cache = FileCache()
    for _ in range(5):
        assert cache.read(path, "model.toml", 100, _counting_parse(calls)) == "a"
    assert calls == [b"a"]
    path.write_text("bb")  # size and mtime change: parsed again
    assert cache.read(path, "model.toml", 100, _counting_parse(calls)) == "bb"
    assert calls == [b"a", b"bb"]


def test_a_parse_error_is_cached_and_replayed(tmp_path: Path) -> None:
    path = tmp_path / "model.toml"
    path.write_text("bad")
    calls: list[bytes] = []

    def parse(raw: bytes) -> str:
        calls.append(raw)
        raise ModelConfigError("model.toml is not valid TOML")

    cache = FileCache()
    for _ in range(3):
        with pytest.raises(ModelConfigError, match="not valid TOML"):
            cache.read(path, "model.toml", 100, parse)
    assert len(calls) == 1


def test_fifo_device_and_oversized_files_are_refused_without_reading(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cache = FileCache()
    with pytest.raises(ModelConfigError, match="not a regular file"):
        cache.read(fifo, "model.toml", 100, bytes)
    link = tmp_path / "zero"
    os.symlink("/dev/zero", link)
    with pytest.raises(ModelConfigError, match="symbolic link"):
        cache.read(link, "model.toml", 100, bytes)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 101)
    with pytest.raises(ModelConfigError, match="101 bytes; at most 100"):
        cache.read(big, "model.toml", 100, bytes)
    with pytest.raises(FileNotFoundError):
        cache.read(tmp_path / "none", "model.toml", 100, bytes)


def test_a_symlink_loop_is_a_read_error(tmp_path: Path) -> None:
    loop = tmp_path / "main.py"
    os.symlink("main.py", loop)
    with pytest.raises(ModelReadError):
        check_regular_file(loop, "main.py", 100)
    with pytest.raises(ModelConfigError, match="main.py is missing"):
        check_regular_file(tmp_path / "gone.py", "main.py", 100)


def test_code_version_tracks_every_file_and_reuses_listings(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    (folder / "lib").mkdir(parents=True)
    (folder / "main.py").write_text("x")
    (folder / "lib" / "util.py").write_text("1")
    (folder / "__pycache__").mkdir()
    versions = CodeVersions()
    first = versions.version(folder)
    assert versions.version(folder) == first
    (folder / "__pycache__" / "main.cpython.pyc").write_bytes(b"")  # not the model's code
    assert versions.version(folder) == first
    (folder / "lib" / "util.py").write_text("22")  # no directory changes: still seen
    second = versions.version(folder)
    assert second != first
    (folder / "lib" / "new.py").write_text("")
    assert versions.version(folder) != second
    assert CodeVersions().version(folder) == versions.version(folder)  # same as from scratch
