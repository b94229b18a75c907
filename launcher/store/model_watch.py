"""A model folder's configuration kept between jobs while inotify says nothing changed.

Reading a model folder (``model.toml``, ``main.py``, the code version over every file) takes a
hand-over to the folder readers' threads. A warm job of an unchanged model does not need it:
``FolderWatch`` keeps the last configuration read of each model together with inotify watches
on the model folder and each of its subfolders, on ``models/`` and on the folder that holds
``models/``. Every lookup first drains the inotify queue without blocking (one ``read`` that
answers ``EAGAIN`` when nothing happened); any event on a model's folders drops that model's
entry, any event in ``models/`` or above drops them all. The kernel queues an event before the
system call that caused it returns, so a change made before a request was sent is seen by
that request.

What inotify cannot see (another machine writing a network file system, a mount over a
folder, writes through a shared ``mmap``) is seen when an entry's age reaches ``MAX_AGE``:
each entry is trusted at most that long and then read again. Where inotify cannot be used
at all (no ``inotify_init1``, no watches left), nothing is kept and every job reads its folder
as before.

Races: an entry is stored only when no event that drops an entry was drained between the
start of its read and its storing (``epoch``), and the read's watches are added before the
folder is read, so a change while reading is never stored as current. Above ``models/`` only
changes of entries are watched (a file written beside ``models/``, as ``launcher.db`` is at
every commit, makes no event).

Listing models (``GetModels``) reads folders without their code version: such an entry is
kept as *unversioned* and serves only listings (a job needs the version; a versioned entry
serves both). A listing also keeps what a folder's reading refused (``ModelConfigError``: a
bad ``model.toml``, a FIFO), which an unchanged folder refuses again, and the list of model
ids (``models/`` listed), dropped by any event in ``models/`` or above.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import struct
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger("launcher.models")

#: How long a kept configuration is trusted without being read again (changes inotify misses).
MAX_AGE_SECONDS = 1.0
#: Watches this launcher adds at most; a model that would need more is read every time.
MAX_WATCHES = 4096
#: Folders (the model folder and its subfolders) watched for one model at most.
MAX_FOLDERS_PER_MODEL = 256
#: Models kept at most before the cache starts afresh.
MAX_ENTRIES = 10_000

_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_IN_MODIFY = 0x002
_IN_ATTRIB = 0x004
_IN_CLOSE_WRITE = 0x008
_IN_MOVED_FROM = 0x040
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_DELETE_SELF = 0x400
_IN_MOVE_SELF = 0x800
_IN_Q_OVERFLOW = 0x4000
_IN_IGNORED = 0x8000
_IN_ONLYDIR = 0x01000000
_IN_DONT_FOLLOW = 0x02000000
_CHANGES = (
    _IN_MODIFY
    | _IN_ATTRIB
    | _IN_CLOSE_WRITE
    | _IN_MOVED_FROM
    | _IN_MOVED_TO
    | _IN_CREATE
    | _IN_DELETE
    | _IN_DELETE_SELF
    | _IN_MOVE_SELF
)
#: Above ``models/`` only its entry matters (replaced, renamed, removed): the writes of files
#: beside it (``launcher.db`` and its journal, at every commit) are not asked for.
_ENTRY_CHANGES = (
    _IN_MOVED_FROM | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE | _IN_DELETE_SELF | _IN_MOVE_SELF
)
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)
_ALL = "*"  # a watch whose events drop every entry (models/)
_ABOVE = ".."  # the folder holding models/: its events about models/ drop every entry


def _libc() -> Any | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    except (OSError, AttributeError):
        return None
    return libc


class FolderWatch:
    """Configurations of unchanged model folders; ``lookup``/``store`` on the event loop,
    ``watch_model`` in the folder readers' threads."""

    def __init__(self, models_dir: Path, max_age: float = MAX_AGE_SECONDS) -> None:
        self.max_age = max_age
        self.epoch = 0  # events drained so far (loop only)
        # model id -> (configuration, read since, versioned); loop only
        self._entries: dict[str, tuple[Any, float, bool]] = {}
        self._ids: tuple[list[str], float] | None = None  # models/ listed (loop only)
        self._lock = threading.Lock()
        self._owners: dict[int, set[str]] = {}  # watch descriptor -> model ids (or _ALL, _ABOVE)
        self._name = b""
        self._libc = _libc()
        self._fd = -1
        if self._libc is not None:
            self._fd = self._libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
            if self._fd < 0:
                log.info("model folders are read for every job: inotify_init1 failed")
        if self._fd >= 0:
            models_dir = Path(models_dir)
            ok = self._add(os.fsencode(models_dir), _ALL, follow=True)
            # Above models/, only what happens to the entry "models" matters (a swapped link).
            ok = ok and self._add(
                os.fsencode(models_dir.parent), _ABOVE, follow=True, mask=_ENTRY_CHANGES
            )
            self._name = os.fsencode(models_dir.name)
            if not ok:
                self.close()

    @property
    def active(self) -> bool:
        return self._fd >= 0

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
        self._entries.clear()
        self._ids = None

    def __del__(self) -> None:  # a registry dropped without close() gives back its instance
        self.close()

    def lookup(self, model_id: str, versioned: bool = True) -> Any | None:
        """The kept configuration of ``model_id``, or ``None`` (read it); ``versioned=False``
        (a listing) takes an entry read without the code version too."""
        if self._fd < 0:
            return None
        self.drain()
        return self._kept(model_id, versioned, time.monotonic())

    def lookup_many(self, model_ids: Iterable[str], versioned: bool = False) -> dict[str, Any]:
        """``lookup`` of each (the queue drained once): the kept ones, by model id."""
        if self._fd < 0:
            return {}
        self.drain()
        now = time.monotonic()
        found = {}
        for model_id in model_ids:
            kept = self._kept(model_id, versioned, now)
            if kept is not None:
                found[model_id] = kept
        return found

    def _kept(self, model_id: str, versioned: bool, now: float) -> Any | None:
        entry = self._entries.get(model_id)
        if entry is None or (versioned and not entry[2]):
            return None
        if now - entry[1] >= self.max_age:
            del self._entries[model_id]
            return None
        return entry[0]

    def store(
        self, model_id: str, config: Any, epoch: int, since: float, versioned: bool = True
    ) -> None:
        """Keep ``config``, read from ``since`` on by a read that started at ``epoch``, unless
        something changed meanwhile (an unversioned one never replaces a versioned one)."""
        if self._fd < 0:
            return
        self.drain()
        if self.epoch != epoch:
            return
        kept = self._entries.get(model_id)
        if not versioned and kept is not None and kept[2] and since - kept[1] < self.max_age:
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[model_id] = (config, since, versioned)

    def lookup_ids(self) -> list[str] | None:
        """The model ids last listed, while nothing changed in ``models/``, or ``None``."""
        if self._fd < 0:
            return None
        self.drain()
        if self._ids is None or time.monotonic() - self._ids[1] >= self.max_age:
            self._ids = None
            return None
        return self._ids[0]

    def store_ids(self, ids: list[str], epoch: int, since: float) -> None:
        """Keep the ids of ``models/`` listed from ``since`` on (see ``store``)."""
        if self._fd < 0:
            return
        self.drain()
        if self.epoch == epoch:
            self._ids = (ids, since)

    def watch_model(self, model_id: str, folder: Path) -> bool:
        """Watch ``folder`` and its subfolders for ``model_id`` (before they are read), not
        following symbolic links; ``False`` when that cannot be done (the read is not kept)."""
        if self._fd < 0:
            return False
        folders = [os.fsencode(folder)]
        i = 0
        while i < len(folders):
            if len(folders) > MAX_FOLDERS_PER_MODEL:
                return False
            path = folders[i]
            i += 1
            if not self._add(path, model_id, follow=False):
                return False
            try:
                with os.scandir(path) as it:
                    for entry in it:
                        if entry.name != b"__pycache__" and entry.is_dir(follow_symlinks=False):
                            folders.append(os.path.join(path, entry.name))
            except OSError:
                return False
        return True

    def _add(self, path: bytes, owner: str, follow: bool, mask: int = _CHANGES) -> bool:
        assert self._libc is not None
        mask |= _IN_ONLYDIR | (0 if follow else _IN_DONT_FOLLOW)
        with self._lock:
            if len(self._owners) >= MAX_WATCHES:
                return False
            wd = self._libc.inotify_add_watch(self._fd, path, mask)
            if wd < 0:
                if ctypes.get_errno() == errno.ENOSPC:
                    log.info("model folders: no inotify watches left; such folders are read")
                return False
            self._owners.setdefault(wd, set()).add(owner)
        return True

    def drain(self) -> None:
        """Apply every queued event (never blocks)."""
        while self._fd >= 0:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return
            except OSError as e:
                log.warning("model folders: reading inotify events failed (%s); not kept", e)
                self.close()
                return
            if not data:
                return
            self._apply(data)

    def _apply(self, data: bytes) -> None:
        dropped: set[str] = set()
        everything = False
        with self._lock:
            for wd, mask, name in _events(data):
                if mask & _IN_Q_OVERFLOW:
                    everything = True
                    continue
                owners = self._owners.get(wd, ())
                if _ALL in owners:
                    everything = True
                if _ABOVE in owners and (name == self._name or not name):
                    everything = True
                dropped.update(o for o in owners if o not in (_ALL, _ABOVE))
                if mask & _IN_IGNORED:
                    self._owners.pop(wd, None)
        if not (everything or dropped):
            return  # beside models/ only: nothing read is affected, nor a read under way
        self.epoch += 1
        if everything:
            self._entries.clear()
            self._ids = None
            return
        for model_id in dropped:
            self._entries.pop(model_id, None)


def _events(data: bytes) -> Iterable[tuple[int, int, bytes]]:
    """(watch descriptor, mask, name) of each event in ``data``."""
    offset = 0
    while offset + _EVENT.size <= len(data):
        wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
        start = offset + _EVENT.size
        offset = start + length
        yield wd, mask, data[start:offset].rstrip(b"\0")
