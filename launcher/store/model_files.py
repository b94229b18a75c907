"""Reading a model folder's files safely: never blocking, never unbounded, never followed out.

A model folder is written by whoever can write ``<root>/models``, so each file is opened with
``O_NOFOLLOW | O_NONBLOCK`` (a FIFO or a device neither blocks the open nor is read), checked
with ``fstat`` to be a regular file, and read up to a size cap. What is parsed is cached by the
file's identity and change stamps, so an unchanged ``model.toml`` is neither re-read nor
re-parsed. The code version (a hash of the folder's file list) is computed with ``scandir`` and
reuses the listing of every directory whose stamps did not change.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from launcher.store.model_toml import ModelConfigError

T = TypeVar("T")

# Written by Python when main.py is imported outside a read-only sandbox; not the model's code.
IGNORED_DIRS = frozenset({"__pycache__"})
#: Directory listings kept by ``CodeVersions`` before the cache starts afresh.
_MAX_LISTINGS = 100_000
_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)


class ModelReadError(Exception):
    """An I/O error reading the model's files (``read_executable_file_failed``)."""


def _stamp(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _open_error(path: Path, name: str, error: OSError) -> Exception:
    """A failed open as the error a model author can act on."""
    if error.errno == errno.ENOENT:
        return FileNotFoundError(error.errno, str(error), str(path))
    if error.errno == errno.ELOOP:
        # O_NOFOLLOW refuses every symbolic link with ELOOP; a link that leads somewhere is a
        # bad model folder, a link that leads nowhere (a loop) is an I/O error reading it.
        try:
            os.stat(path)
        except OSError as e:
            return ModelReadError(f"cannot read {name}: {e}")
        return ModelConfigError(
            f"{name} is a symbolic link; it must be a regular file inside the model folder"
        )
    return ModelReadError(f"cannot read {name}: {error}")


class FileCache:
    """Parsed contents of small files, keyed by path and checked against the file's stamps."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[tuple[int, ...], object]] = {}

    def read(self, path: Path, name: str, max_bytes: int, parse: Callable[[bytes], T]) -> T:
        """``parse(contents)`` of the regular file ``path``, from the cache when unchanged.

        ``FileNotFoundError`` when there is none; ``ModelConfigError`` (not a regular file, a
        symbolic link, over ``max_bytes``, or what ``parse`` raises); ``ModelReadError``.
        A parse error is cached too: a broken file is not re-parsed on every call.
        """
        try:
            fd = os.open(path, _FLAGS)
        except OSError as e:
            raise _open_error(path, name, e) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ModelConfigError(f"{name} is not a regular file")
            if st.st_size > max_bytes:
                raise ModelConfigError(f"{name} is {st.st_size} bytes; at most {max_bytes}")
            key = _stamp(st)
            with self._lock:
                cached = self._entries.get(str(path))
            if cached is not None and cached[0] == key:
                return _replay(cached[1])
            raw = _read_at_most(fd, name, max_bytes)
        finally:
            os.close(fd)
        try:
            value: object = parse(raw)
        except ModelConfigError as e:
            value = e
        with self._lock:
            if len(self._entries) >= _MAX_LISTINGS:
                self._entries.clear()
            self._entries[str(path)] = (key, value)
        return _replay(value)


def _replay(value: object) -> T:  # type: ignore[type-var]
    if isinstance(value, ModelConfigError):
        raise ModelConfigError(str(value))
    return value  # type: ignore[return-value]


def _read_at_most(fd: int, name: str, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    try:
        while True:
            chunk = os.read(fd, min(1 << 16, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise ModelConfigError(f"{name} is larger than {max_bytes} bytes")
    except OSError as e:
        raise ModelReadError(f"cannot read {name}: {e}") from e
    return b"".join(chunks)


def check_regular_file(path: Path, name: str, max_bytes: int) -> None:
    """``path`` is a regular file of at most ``max_bytes`` (opened, never read)."""
    try:
        fd = os.open(path, _FLAGS)
    except OSError as e:
        error = _open_error(path, name, e)
        if isinstance(error, FileNotFoundError):
            raise ModelConfigError(f"{name} is missing from the model folder") from None
        raise error from None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(st.st_mode):
        raise ModelConfigError(f"{name} is not a regular file")
    if st.st_size > max_bytes:
        raise ModelConfigError(f"{name} is {st.st_size} bytes; at most {max_bytes}")


class CodeVersions:
    """The code version of a folder: a hash of every file's (relative path, size, mtime_ns).

    Each directory's listing is kept with the directory's stamps; a directory whose stamps
    are unchanged is not listed again (its files are still ``lstat``ed, since writing a file
    does not change its directory). Nothing is followed: a symbolic link is hashed as itself.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listings: dict[str, tuple[tuple[int, ...], tuple[str, ...], tuple[str, ...]]] = {}

    def version(self, folder: Path) -> str:
        entries: list[str] = []
        try:
            self._walk(str(folder), "", entries)
        except OSError as e:
            raise ModelReadError(f"{folder}: cannot list the model's files: {e}") from e
        entries.sort()
        digest = hashlib.sha256("\n".join(entries).encode("utf-8", "surrogateescape"))
        return digest.hexdigest()[:32]

    def _walk(self, top: str, relative: str, entries: list[str]) -> None:
        stack = [(top, relative)]
        while stack:
            path, rel = stack.pop()
            files, dirs = self._listing(path)
            for name in files:
                st = os.lstat(os.path.join(path, name))
                entries.append(f"{rel}{name}\0{st.st_size}\0{st.st_mtime_ns}")
            for name in dirs:
                stack.append((os.path.join(path, name), f"{rel}{name}/"))

    def _listing(self, path: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        key = _stamp(os.lstat(path))
        with self._lock:
            cached = self._listings.get(path)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        files: list[str] = []
        dirs: list[str] = []
        with os.scandir(path) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name not in IGNORED_DIRS:
                        dirs.append(entry.name)
                else:
                    files.append(entry.name)
        listing = (key, tuple(sorted(files)), tuple(sorted(dirs)))
        with self._lock:
            if len(self._listings) >= _MAX_LISTINGS:  # folders come and go: never unbounded
                self._listings.clear()
            self._listings[path] = listing
        return listing[1], listing[2]
