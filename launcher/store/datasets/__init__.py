"""DatasetStore: datasets' metadata in SQLite, their entries in append-only files on disk.

Owns the dataset lifecycle (create, add entries, read, remove entries, delete) and the
snapshots a createState job reads a dataset key through (``open_param``). Every change commits
a new ``datasetVersionId`` and a new immutable index file (see ``datasets.files``); data files
are never rewritten below their committed end, so an open snapshot keeps reading the version
it was taken from whatever happens afterwards. Writers of one dataset take turns on a
per-dataset lock, held only while an upload already staged and validated is appended and
committed (or while removed entries are compacted away); readers take no lock.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from launcher.errors import RequestError, dataset_key_not_found, invalid
from launcher.params import ParamSource
from launcher.store.datasets import files as files
from launcher.store.datasets import meta as meta
from launcher.store.datasets.append import EntryAppender, KeyUpload
from launcher.store.datasets.compact import compact_key, worth_compacting
from launcher.store.datasets.meta import Current, DatasetInfo, KeyFile
from launcher.store.datasets.read import EntriesSnapshot, EntryRange, Selection, resolve
from launcher.store.datasets.rules import KeyDef, KeyRules, check_definition
from launcher.store.db import Database

__all__ = ["DatasetInfo", "DatasetStore", "EntryRange", "KeyDef", "KeyRules", "PendingAdd"]

# A reader that loses a race with a commit (its index file unlinked under it) tries again.
_READ_ATTEMPTS = 5
COMPACT_MIN_GARBAGE = 64 << 20


class DatasetStore:
    def __init__(
        self, root: Path, db: Database, compact_min_garbage: int = COMPACT_MIN_GARBAGE
    ) -> None:
        self.dir = Path(root) / "datasets"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._staging = self.dir / ".staging"
        self._db = db
        self._compact_min_garbage = compact_min_garbage
        db.register_schema("datasets", meta.SCHEMA)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        # Per dataset with an upload written straight into its data files: per key position,
        # (gen, start, reserved end) of the range reserved for it past the committed end.
        self._claims: dict[str, dict[int, tuple[int, int, int]]] = {}
        self._sweep()

    # -- metadata ---------------------------------------------------------------------------

    def create(self, name: str, description: str, keys: Sequence[KeyDef]) -> DatasetInfo:
        check_definition(name, description, keys)
        info = DatasetInfo(
            str(uuid.uuid4()), name, description, time.time(), tuple(keys), 0, 0, str(uuid.uuid4())
        )
        dataset_dir = self.dir / info.id
        dataset_dir.mkdir()
        for pos in range(len(keys)):
            files.data_path(dataset_dir, pos, 0).touch()
        files.fsync_dir(dataset_dir)
        files.fsync_dir(self.dir)
        with self._db.transaction() as conn:
            meta.insert(conn, info)
        return info

    def get(self, dataset_id: str) -> DatasetInfo:
        return meta.current(self._db.connect(), dataset_id).info

    def page(
        self, offset: int, limit: int, ids: Sequence[str] | None = None
    ) -> tuple[list[DatasetInfo], int]:
        """A page of datasets (oldest first) and the total matching ``ids`` (all if None)."""
        return meta.page(self._db.connect(), offset, limit, ids)

    def delete(self, dataset_id: str) -> None:
        with self._lock(dataset_id):
            with self._db.transaction() as conn:
                meta.current(conn, dataset_id)
                meta.delete(conn, dataset_id)
            # Open snapshots keep their file descriptors, so unlinking cannot change them.
            shutil.rmtree(self.dir / dataset_id, ignore_errors=True)
        with self._locks_guard:
            self._locks.pop(dataset_id, None)

    # -- adding -----------------------------------------------------------------------------

    def begin_add(self, dataset_id: str, keys: Sequence[tuple[str, int]]) -> PendingAdd:
        """Start an upload of ``(key name, byte_size)`` per key, in the order bytes will come."""
        info = self.get(dataset_id)
        by_name = {k.name: pos for pos, k in enumerate(info.keys)}
        parts: list[tuple[int, str, KeyRules, int]] = []
        for i, (name, byte_size) in enumerate(keys):
            if name not in by_name:
                known = ", ".join(repr(k.name) for k in info.keys)
                raise invalid(f"keys[{i}].key", f"the dataset has no key {name!r} (keys: {known})")
            if any(name == p[1] for p in parts):
                raise invalid(f"keys[{i}].key", f"key {name!r} is given twice")
            parts.append((by_name[name], name, info.keys[by_name[name]].rules, byte_size))
        given = {p[1] for p in parts}
        for k in info.keys:
            if k.required and k.name not in given:
                raise invalid("keys", f"the required key {k.name!r} is missing")
        targets = self._claim(dataset_id, parts)
        try:
            appender = EntryAppender(self._staging, parts, targets)
        except BaseException:
            self._release(dataset_id, targets)
            raise
        return PendingAdd(self, dataset_id, appender, targets)

    def _claim(
        self, dataset_id: str, parts: list[tuple[int, str, KeyRules, int]]
    ) -> list[tuple[int, int]] | None:
        """Reserve, for this upload, each key's range past its committed end, so that its bytes
        are written there directly (no staging copy); None (stage instead) while another
        upload holds the dataset's reservation or the declared size exceeds the free space
        (a liar's size then pads nothing). Commits meanwhile append past the reserved ends."""
        dataset_dir = self.dir / dataset_id
        declared = sum(p[3] for p in parts)
        free = os.statvfs(dataset_dir)
        if declared > free.f_bavail * free.f_frsize:
            return None
        with self._lock(dataset_id):
            if dataset_id in self._claims:
                return None
            now = meta.current(self._db.connect(), dataset_id)
            claim: dict[int, tuple[int, int, int]] = {}
            targets: list[tuple[int, int]] = []
            try:
                for key_pos, _, _, byte_size in parts:
                    key_file = now.files[key_pos]
                    path = files.data_path(dataset_dir, key_pos, key_file.gen)
                    targets.append((os.open(path, os.O_WRONLY | os.O_CLOEXEC), key_file.end))
                    claim[key_pos] = (key_file.gen, key_file.end, key_file.end + byte_size)
            except BaseException:
                for fd, _ in targets:
                    os.close(fd)
                raise
            self._claims[dataset_id] = claim
            return targets

    def _release(
        self,
        dataset_id: str,
        targets: list[tuple[int, int]] | None,
        aborted: EntryAppender | None = None,
    ) -> None:
        """End an upload's reservation; an aborted one's bytes are cut off again where nothing
        was committed after them (else they are garbage that compaction reclaims)."""
        if targets is None:
            return
        with self._lock(dataset_id):
            claim = self._claims.pop(dataset_id, None)
            if aborted is None or claim is None:
                return
            try:
                now = meta.current(self._db.connect(), dataset_id)
            except RequestError:
                return  # deleted meanwhile
            for upload in aborted.keys:
                gen, start, _ = claim[upload.key_pos]
                key_file = now.files[upload.key_pos]
                if upload.fd >= 0 and key_file.gen == gen and key_file.end == start:
                    os.ftruncate(upload.fd, start)

    def _commit_add(self, dataset_id: str, appender: EntryAppender, count: int) -> str:
        with self._lock(dataset_id):
            now = meta.current(self._db.connect(), dataset_id)
            added = np.zeros((count, len(now.files), 2), dtype=files.INDEX_DTYPE)
            new_files = list(now.files)
            for upload in appender.keys:
                pos, key_file = upload.key_pos, now.files[upload.key_pos]
                if upload.direct:
                    start, end = self._commit_direct(dataset_id, upload, key_file)
                else:
                    start, end = self._append_staged(dataset_id, upload, key_file)
                added[:, pos, 0] = np.frombuffer(upload.offsets, dtype=np.uint64) + start
                added[:, pos, 1] = np.frombuffer(upload.lengths, dtype=np.uint64)
                new_files[pos] = KeyFile(key_file.gen, end)
            byte_size = now.info.byte_size + sum(u.byte_size for u in appender.keys)
            if now.info.entries == 0:
                return self._commit_version(now, added, byte_size, new_files)
            return self._commit_appended(now, added, byte_size, new_files)

    def _commit_direct(
        self, dataset_id: str, upload: KeyUpload, key_file: KeyFile
    ) -> tuple[int, int]:
        """(start, new end) of a key written into its reserved range: made durable in place."""
        gen, start, reserved_end = self._claims[dataset_id][upload.key_pos]
        if gen != key_file.gen:  # pragma: no cover - compaction skips reserved keys
            raise OSError(f"dataset {dataset_id}: key file replaced during the upload")
        if key_file.end == start:
            # Nothing committed since the reservation: drop what aborted uploads left beyond.
            os.ftruncate(upload.fd, reserved_end)
        os.fsync(upload.fd)
        return start, max(key_file.end, reserved_end)

    def _append_staged(
        self, dataset_id: str, upload: KeyUpload, key_file: KeyFile
    ) -> tuple[int, int]:
        """(start, new end) of a staged key copied to the end of its data file, past any range
        reserved for an upload in progress."""
        claim = self._claims.get(dataset_id, {}).get(upload.key_pos)
        start = key_file.end
        if claim is not None and claim[0] == key_file.gen:
            start = max(start, claim[2])
        dataset_dir = self.dir / dataset_id
        fd = os.open(files.data_path(dataset_dir, upload.key_pos, key_file.gen), os.O_WRONLY)
        try:
            # Bytes past the committed end (and any reservation) belong to an add that never
            # committed.
            os.ftruncate(fd, start)
            files.copy_range(upload.fd, 0, fd, start, upload.byte_size)
            os.fsync(fd)
        finally:
            os.close(fd)
        return start, start + upload.byte_size

    def _commit_appended(
        self, now: Current, added: np.ndarray, byte_size: int, new_files: list[KeyFile]
    ) -> str:
        """Commit a version whose index is the current one's plus ``added`` (appended to the
        same file, never rewritten)."""
        dataset_dir = self.dir / now.info.id
        version_id = str(uuid.uuid4())
        files.append_index(dataset_dir, now.info.version_id, now.info.entries, version_id, added)
        entries = now.info.entries + added.shape[0]
        with self._db.transaction() as conn:
            meta.switch_version(conn, now.info.id, version_id, entries, byte_size, new_files)
        files.unlink_quietly(files.index_path(dataset_dir, now.info.version_id))
        return version_id

    # -- reading ----------------------------------------------------------------------------

    def read_entries(self, dataset_id: str, selection: Selection) -> EntriesSnapshot:
        """The selected entries of every key, from one version, as a snapshot to stream."""
        index, key_defs, fds = self._snapshot(dataset_id, None)
        try:
            positions = resolve(selection, index.shape[0])
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return EntriesSnapshot([k.name for k in key_defs], fds, index, positions)

    def open_param(self, dataset_id: str, dataset_key: str, name: str) -> ParamSource:
        """A createState param over every present entry of ``dataset_key``, in entry order."""
        index, key_defs, fds = self._snapshot(dataset_id, dataset_key)
        pos = next(i for i, k in enumerate(key_defs) if k.name == dataset_key)
        for i, fd in enumerate(fds):
            if i != pos:
                os.close(fd)
        column = np.array(index[:, pos, :], dtype=np.uint64)
        present = column[:, 1] > 0
        return ParamSource(
            name, fds[pos], np.ascontiguousarray(column[present, 0]), column[present, 1].copy()
        )

    def _snapshot(
        self, dataset_id: str, require_key: str | None
    ) -> tuple[np.ndarray, list[KeyDef], list[int]]:
        """One version's index and a read fd per key, without locking out writers."""
        conn = self._db.connect()
        for _ in range(_READ_ATTEMPTS):
            now = meta.current(conn, dataset_id)
            if require_key is not None and all(k.name != require_key for k in now.info.keys):
                raise dataset_key_not_found(dataset_id, require_key)
            fds: list[int] = []
            try:
                index = self._index(now)
                for pos, key_file in enumerate(now.files):
                    path = files.data_path(self.dir / dataset_id, pos, key_file.gen)
                    fds.append(os.open(path, os.O_RDONLY))
            except FileNotFoundError:
                for fd in fds:
                    os.close(fd)
                continue  # a commit replaced this version meanwhile
            return index, list(now.info.keys), fds
        raise OSError(f"dataset {dataset_id} kept changing while it was being read")

    # -- removing ---------------------------------------------------------------------------

    def remove_entries(self, dataset_id: str, selection: Selection) -> str:
        with self._lock(dataset_id):
            now = meta.current(self._db.connect(), dataset_id)
            index = self._index(now)
            keep = np.ones(index.shape[0], dtype=bool)
            keep[resolve(selection, index.shape[0])] = False
            kept = np.array(index[keep])
            new_files = list(now.files)
            reserved = self._claims.get(dataset_id, {})
            for pos, key_file in enumerate(now.files):
                live = int(kept[:, pos, 1].sum())
                # A key with a reserved range keeps its file until that upload ends.
                if pos not in reserved and worth_compacting(
                    live, key_file, self._compact_min_garbage
                ):
                    new_files[pos], kept[:, pos, :] = compact_key(
                        self.dir / dataset_id, pos, key_file, kept[:, pos, :]
                    )
            return self._commit_version(now, kept, int(kept[:, :, 1].sum()), new_files)

    # -- internals --------------------------------------------------------------------------

    def _index(self, now: Current) -> np.ndarray:
        return files.load_index(
            self.dir / now.info.id, now.info.version_id, now.info.entries, len(now.files)
        )

    def _commit_version(
        self, now: Current, index: np.ndarray, byte_size: int, new_files: list[KeyFile]
    ) -> str:
        """Write the new version's index, switch to it in one transaction, drop the old one."""
        dataset_dir = self.dir / now.info.id
        version_id = str(uuid.uuid4())
        if index.shape[0]:
            files.write_index(dataset_dir, version_id, index)
        with self._db.transaction() as conn:
            meta.switch_version(conn, now.info.id, version_id, index.shape[0], byte_size, new_files)
        files.unlink_quietly(files.index_path(dataset_dir, now.info.version_id))
        for pos, (old, new) in enumerate(zip(now.files, new_files, strict=True)):
            if old.gen != new.gen:
                files.unlink_quietly(files.data_path(dataset_dir, pos, old.gen))
        return version_id

    def _lock(self, dataset_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(dataset_id, threading.Lock())

    def _sweep(self) -> None:
        """At start: drop what crashes left (uncommitted files, folders of deleted datasets)."""
        shutil.rmtree(self._staging, ignore_errors=True)
        known = {now.info.id: now for now in meta.all_current(self._db.connect())}
        for path in self.dir.iterdir():
            now = known.get(path.name)
            if now is None:
                shutil.rmtree(path, ignore_errors=True)
            else:
                files.sweep(path, now.info.version_id, [f.gen for f in now.files])


class PendingAdd:
    """An upload in progress: ``write`` its chunks, then ``commit`` (or ``abort``)."""

    def __init__(
        self,
        store: DatasetStore,
        dataset_id: str,
        appender: EntryAppender,
        targets: list[tuple[int, int]] | None = None,
    ) -> None:
        self._store = store
        self._dataset_id = dataset_id
        self._appender = appender
        self._targets = targets
        # ``write`` runs in a thread; a cancelled call's ``abort`` waits for it to end rather
        # than closing descriptors under it.
        self._busy = threading.Lock()

    def write(self, chunk: bytes | memoryview) -> None:
        with self._busy:
            self._appender.write(chunk)

    def write_many(self, chunks: Sequence[bytes | memoryview]) -> None:
        """``write`` of several chunks in order, in one call (one thread hop for a batch)."""
        with self._busy:
            self._appender.write_many(chunks)

    def commit(self) -> str:
        """Validate the end of the upload and make all its entries visible at once."""
        with self._busy:
            return self._commit()

    def _commit(self) -> str:
        try:
            count = self._appender.finish()
            version_id = self._store._commit_add(self._dataset_id, self._appender, count)
        except BaseException:
            try:
                self._release(aborted=True)
            finally:
                self._appender.close()
            raise
        try:
            self._release()
        finally:
            self._appender.close()
        return version_id

    def abort(self) -> None:
        with self._busy:
            try:
                self._release(aborted=True)
            finally:
                self._appender.close()

    def _release(self, aborted: bool = False) -> None:
        targets, self._targets = self._targets, None
        self._store._release(self._dataset_id, targets, self._appender if aborted else None)
