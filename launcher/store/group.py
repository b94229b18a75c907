"""Group commit: concurrent jobs' small writes share one SQLite transaction and its fsync.

One writer thread takes every write queued while its previous commit ran (it never waits for
company: a lone write commits at once), runs each in a savepoint of one ``BEGIN IMMEDIATE``
transaction, and commits with ``synchronous=FULL`` if any of them needs to be durable
(``NORMAL`` otherwise: in the WAL, durable with the next fsync'd commit). Each write's future
resolves after that commit, so a success is answered only once its rows are on disk. A single
writer also means the hot path never waits on SQLite's busy handler for its own lock.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from launcher.store.db import Database

#: At most this many writes share one transaction (bounds one batch's work and its undo).
MAX_BATCH = 128

_Item = tuple[Callable[..., Any], tuple[Any, ...], bool, Future[Any]]


class GroupCommitter:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def is_writer(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], fsync: bool) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._thread is None:
                self._queue = queue.SimpleQueue()  # its own: a stopping writer keeps the old
                self._thread = threading.Thread(
                    target=self._run, args=(self._queue,), name="launcher-group-commit", daemon=True
                )
                self._thread.start()
            self._queue.put((fn, args, fsync, future))
        return future

    def stop(self) -> None:
        """Commit what is queued, then end the writer thread (a later submit restarts it)."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is None:
                return
            self._queue.put(None)
        thread.join()

    def _run(self, items: queue.SimpleQueue[_Item | None]) -> None:
        while True:
            first = items.get()
            if first is None:
                return
            batch = [first]
            ending = False
            while len(batch) < MAX_BATCH:
                try:
                    item = items.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    ending = True
                    break
                batch.append(item)
            self._commit(batch)
            if ending:
                return

    def _commit(self, batch: list[_Item]) -> None:
        live = [item for item in batch if item[3].set_running_or_notify_cancel()]
        if not live:
            return
        results: list[tuple[bool, Any]] = []
        try:
            conn = self._db.connect()
            durable = any(fsync for _, _, fsync, _ in live)
            if not durable:  # the connection's own setting is FULL
                conn.execute("PRAGMA synchronous=NORMAL")
            alone = len(live) == 1  # no savepoint: its failure undoes the whole transaction
            conn.execute("BEGIN IMMEDIATE")
            try:
                for fn, args, _, _ in live:
                    if not alone:
                        conn.execute("SAVEPOINT grouped")
                    try:
                        value = fn(*args)
                    except BaseException as e:  # undone alone; the others commit
                        if not alone:
                            conn.execute("ROLLBACK TO grouped")
                            conn.execute("RELEASE grouped")
                        results.append((False, e))
                        continue
                    if not alone:
                        conn.execute("RELEASE grouped")
                    results.append((True, value))
                if alone and not results[0][0]:
                    if conn.in_transaction:  # (an I/O error may have ended it already)
                        conn.execute("ROLLBACK")
                else:
                    conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                if not durable:
                    conn.execute("PRAGMA synchronous=FULL")
        except BaseException as e:  # the commit itself failed: nothing of the batch is stored
            for *_, future in live:
                future.set_exception(e)
            return
        for (ok, value), (*_, future) in zip(results, live, strict=True):
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
