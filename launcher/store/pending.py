"""A state being created: its keys streamed to a private work folder, then committed.

Commit protocol (the only way a state comes to exist): every key is streamed into
``<root>/tmp/states/<stateId>/`` and fsync'd; that folder is fsync'd and renamed, in one atomic
step, to ``<root>/states/<stateId>/``; the parents are fsync'd; then one SQLite transaction
(``synchronous=FULL``) inserts the state's rows. A state folder without a row is a leftover of a
crash and ``StateStore.reconcile`` removes it, so after any crash a state is either complete or
absent. Small keys (``blobs.INLINE_MAX_BYTES``) are committed inside the rows instead of files;
a state of only small keys costs one fsync.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from launcher import faults
from launcher.store.blobs import KeyWriter, StateKey, fsync_dir, remove_tree
from launcher.store.db import Database

MAX_KEYS = 100


@dataclass(frozen=True)
class StateRecord:
    id: str
    model_id: str
    name: str
    created_at: float
    keys: tuple[StateKey, ...]
    mounted_models: tuple[dict[str, Any], ...]
    being_deleted: bool

    def to_json(self) -> dict[str, Any]:
        """The contract's STATE shape (camelCase keys)."""
        return {
            "id": self.id,
            "name": self.name,
            "createdAt": self.created_at,
            "beingDeleted": self.being_deleted,
            "state": [{"key": k.key, "byteSize": k.byte_size} for k in self.keys],
            "mountedModels": [dict(m) for m in self.mounted_models],
            "trainingOperations": [],
        }


class PendingState:
    """A state being created. Nothing of it is visible until ``commit`` returns; ``abort``
    (or leaving a ``with`` block without committing) removes every file it wrote."""

    def __init__(
        self,
        db: Database,
        states_dir: Path,
        work_dir: Path,
        state_id: str,
        model_id: str,
        name: str,
        mounted_models: str,
        lazy_folder: bool = False,
    ) -> None:
        """``lazy_folder``: the work folder is made with the first key that needs a file
        (a state of inline keys then touches no folder: its rows are the whole state)."""
        self.state_id = state_id
        self.model_id = model_id
        self.name = name
        self._db = db
        self._states_dir = states_dir
        self._work_dir = work_dir
        self._final_dir = states_dir / state_id
        self._mounted_models = mounted_models
        self._writers: list[KeyWriter] = []
        self._renamed = False
        self._done = False
        self._folder_made = False
        if not lazy_folder:
            self._make_folder()

    def _make_folder(self) -> None:
        if self._folder_made:
            return
        try:
            self._work_dir.mkdir()
        except FileExistsError:
            raise ValueError(f"state id {self.state_id!r} is already being created") from None
        self._folder_made = True

    def key_writer(self, key: str) -> KeyWriter:
        """A writer for a new key (``ValueError``: bad, duplicate or one key too many)."""
        if self._done:
            raise ValueError(f"state {self.state_id!r} is already committed or aborted")
        if not isinstance(key, str) or not key:
            raise ValueError("a state key must be a non-empty string")
        if any(w.key == key for w in self._writers):
            raise ValueError(f"state key {key!r} provided twice")
        if len(self._writers) >= MAX_KEYS:
            raise ValueError(f"a state has at most {MAX_KEYS} keys")
        if self._writers:
            faults.point("keys_written")
        writer = KeyWriter(
            key, self._work_dir / f"k{len(self._writers):03d}", before_file=self._make_folder
        )
        self._writers.append(writer)
        return writer

    def commit(self) -> StateRecord:
        """Make the state durable and visible; on any failure, nothing of it remains."""
        if self._done:
            raise ValueError(f"state {self.state_id!r} is already committed or aborted")
        unfinished = [w.key for w in self._writers if w.result is None]
        if unfinished:
            raise ValueError(f"state keys not finished: {', '.join(map(repr, unfinished))}")
        keys = tuple(w.result for w in self._writers if w.result is not None)
        try:
            if any(w.in_file for w in self._writers):
                fsync_dir(self._work_dir)
                os.rename(self._work_dir, self._final_dir)
                self._renamed = True
                fsync_dir(self._states_dir)
                fsync_dir(self._work_dir.parent)
            elif self._folder_made:  # every key is inline: the row is the whole state
                os.rmdir(self._work_dir)
            faults.point("before_sql_commit")
            created_at = time.time()
            # In the group commit: concurrent jobs' rows share one fsync'd transaction.
            self._db.write(self._insert_rows, keys, created_at)
        except BaseException:
            self.abort()
            raise
        self._done = True
        return StateRecord(
            id=self.state_id,
            model_id=self.model_id,
            name=self.name,
            created_at=created_at,
            keys=keys,
            mounted_models=tuple(json.loads(self._mounted_models)),
            being_deleted=False,
        )

    @property
    def in_files(self) -> bool:
        """Whether any key went to a file (committing then fsyncs folders, not only rows)."""
        return any(w.in_file for w in self._writers)

    def _insert_rows(self, keys: tuple[StateKey, ...], created_at: float) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO states (id, model_id, name, created_at, mounted_models)"
                " VALUES (?, ?, ?, ?, ?)",
                (self.state_id, self.model_id, self.name, created_at, self._mounted_models),
            )
            conn.executemany(
                "INSERT INTO state_keys (state_id, position, key, file, byte_size, sha256,"
                " data) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (self.state_id, i, k.key, w.path.name, k.byte_size, k.sha256, w.inline)
                    for i, (k, w) in enumerate(zip(keys, self._writers, strict=True))
                ],
            )
            conn.execute(
                "INSERT OR IGNORE INTO active_states (model_id, state_id) VALUES (?, ?)",
                (self.model_id, self.state_id),
            )

    def abort(self) -> None:
        """Remove every file of this state; idempotent, and a no-op after a commit."""
        if self._done:
            return
        self._done = True
        for writer in self._writers:
            writer.discard()
        remove_tree(self._work_dir)
        if self._renamed:
            remove_tree(self._final_dir)

    def __enter__(self) -> PendingState:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()
