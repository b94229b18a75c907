"""Per-job logs, one per state id, bounded, followable, readable while running and after.

While a job runs its log is a ``JobLog``: records (see ``joblog_buffer``) are kept in
memory (bounded) and reach ``<root>/logs/jobs/<id>.joblog.head`` in batches as they arrive;
once the head is full, ``<id>.joblog.tail`` is rewritten from memory twice a second while it
changes (disk stays bounded too, and a flood costs a bounded write whatever its rate). When
the job ends its kept log is saved once: in ``launcher.db`` (``joblog_saver``, batched with
the other jobs of that moment) or, without a database, as ``<id>.joblog``; the work files
then go. After a crash the work files are what is left, and are read as head, cut, tail.
The log lives as long as the job record and counts in the storage of whoever made the job
(``stored_bytes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

from launcher import rules
from launcher.store.db import Database
from launcher.store.joblog_buffer import LogBuffer, launcher_record, now_ms, parse_records
from launcher.store.joblog_saver import Ended, LogSaver

log = logging.getLogger("launcher.store")

#: The default bound of one job's log: half for its first part, half for its last.
DEFAULT_LOG_BYTES = 1024 * 1024
#: The smallest bound accepted (a launcher line must always fit).
MIN_LOG_BYTES = 64 * 1024
#: Records reach the work files once this many bytes wait, or this long after the first.
FLUSH_BYTES = 64 * 1024
FLUSH_SECONDS = 0.5

#: Launcher lines wait unbuilt up to this many characters (a few lines; then the buffer).
_WAITING_BYTES = 16 * 1024

_SUFFIXES = (".joblog", ".joblog.head", ".joblog.tail", ".joblog.tmp", ".joblog.tail.tmp")


def valid_state_id(state_id: str) -> bool:
    return rules.STATE_ID.ok(state_id)


class JobLog:
    """The log of one running job; every method is called on the event loop. Records reach
    the head file in batches (``FLUSH_BYTES`` or ``FLUSH_SECONDS``, whichever first), and
    once cut, the tail file is rewritten from memory (at most ``tail_limit`` bytes) every
    ``FLUSH_SECONDS`` while it changes: a short job costs nothing on disk before its end, and
    a flood costs a bounded write twice a second, whatever its rate. Until the model writes
    or someone reads, the launcher's lines wait as ``(ms, text)``: a silent job that nobody
    reads while it runs never builds its buffer."""

    def __init__(
        self,
        folder: Path,
        state_id: str,
        limit: int,
        flusher: Callable[[JobLog], None] | None = None,
    ) -> None:
        self.state_id = state_id
        self._limit = limit
        self._buffer: LogBuffer | None = None
        self._lines: list[tuple[int, str]] = []
        self._lines_bytes = 0
        self._folder = folder
        self._head_fd: int | None = None
        self._tail_written = False
        self._tail_dirty = False
        self._head_seen = 0
        self._pending_head: list[bytes] = []
        self._pending_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        #: Who flushes this log within ``FLUSH_SECONDS`` of being told (all logs' one timer);
        #: None: a timer of its own.
        self._flusher = flusher
        self._flush_due = False
        self._disk_ok = True
        #: Set (and replaced) when records are added; made only while someone follows.
        self._changed: asyncio.Event | None = None
        self.closed = False

    @property
    def buffer(self) -> LogBuffer:
        """The log's records (built, with the lines waiting, when first needed)."""
        if self._buffer is None:
            self._buffer = LogBuffer(self._limit // 2, self._limit - self._limit // 2)
            lines, self._lines = self._lines, []
            for ms, text in lines:
                self._store(self._buffer.launcher_line(text, ms))
        return self._buffer

    # ---- writing ----

    def launcher(self, text: str) -> None:
        if self.closed:
            return
        if self._buffer is None and self._lines_bytes < _WAITING_BYTES:
            self._lines.append((now_ms(), text))
            self._lines_bytes += len(text)
        else:
            self._store(self.buffer.launcher_line(text))

    def output(self, stream: str, data: bytes) -> None:
        """The model wrote ``data`` to ``stream`` ("stdout" or "stderr")."""
        if not self.closed:
            self._store(self.buffer.output(stream, data))

    def _store(self, data: bytes) -> None:
        if not data:
            return
        # The records that went to the head come first in ``data``; the rest, to the tail.
        to_head = self.buffer.head_bytes - self._head_seen
        self._head_seen = self.buffer.head_bytes
        if to_head:
            self._pending_head.append(data[:to_head])
            self._pending_bytes += to_head
        if len(data) > to_head:
            self._tail_dirty = True
        if self._pending_bytes >= FLUSH_BYTES:
            self._flush()
        elif not self._flush_due and not self.closed:
            self._flush_due = True
            if self._flusher is not None:
                self._flusher(self)
            else:
                self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._flush)
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def _flush(self) -> None:
        self._flush_due = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.closed:
            return
        head = b"".join(self._pending_head)
        self._pending_head, self._pending_bytes = [], 0
        if not self._disk_ok:
            return
        try:
            if head:
                if self._head_fd is None:
                    self._head_fd = _open_append(self._folder / f"{self.state_id}.joblog.head")
                os.write(self._head_fd, head)
            if self._tail_dirty:
                self._tail_dirty = False
                path = self._folder / f"{self.state_id}.joblog.tail"
                tmp = path.with_name(f"{self.state_id}.joblog.tail.tmp")
                tmp.write_bytes(self.buffer.tail_data())
                os.replace(tmp, path)
                self._tail_written = True
        except OSError as exc:
            self._disk_ok = False
            log.warning("job %s: its log is kept in memory only: %s", self.state_id, exc)

    def finish(self) -> Ended | None:
        """The job ended: its whole kept log (to save once); followers see the end."""
        if self.closed:
            return None
        if self._buffer is None:  # nothing but the launcher's lines: no buffer to build
            self.closed = True
            data = b"".join(launcher_record(text, ms) for ms, text in self._lines)
            return Ended(self.state_id, data, False, False)
        self._store(self.buffer.flush())
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending_head, self._pending_bytes = [], 0
        work_files = self._head_fd is not None or self._tail_written
        if self._head_fd is not None:
            os.close(self._head_fd)
            self._head_fd = None
        if self._changed is not None:
            self._changed.set()
        return Ended(self.state_id, self.buffer.final_data(), self.buffer.cut, work_files)

    # ---- reading ----

    def snapshot(self) -> tuple[list[dict[str, Any]], bool]:
        data, _ = self.buffer.since(0)
        return parse_records(data), self.buffer.cut

    async def follow(self) -> AsyncIterator[list[dict[str, Any]]]:
        """Batches of lines from the first, as they come, until the job ends."""
        seq = 0
        while True:
            # Whether it had ended before this read: records added while the batch is with
            # the reader (the last ones, the outcome) are read on the next turn, not lost.
            ended = self.closed
            if self._changed is None:
                self._changed = asyncio.Event()
            changed = self._changed
            data, seq = self.buffer.since(seq)
            if data:
                yield parse_records(data)
            if ended:
                return
            await changed.wait()


class JobLogs:
    """All jobs' logs: the live ones in memory, the ended ones in their files."""

    def __init__(
        self, folder: Path, limit: int = DEFAULT_LOG_BYTES, db: Database | None = None
    ) -> None:
        if limit < MIN_LOG_BYTES:
            raise ValueError(f"a job log bound must be at least {MIN_LOG_BYTES} bytes")
        self.folder = folder
        self.limit = limit
        self.live: dict[str, JobLog] = {}
        folder.mkdir(parents=True, exist_ok=True)
        #: Ended logs go to ``launcher.db`` in batches; without a database, one file each.
        self._saver = LogSaver(db, folder, self._saved) if db is not None else None
        self._due: set[JobLog] = set()
        self._flush_timer: asyncio.TimerHandle | None = None
        #: Called (on the loop) before a log is read: whoever holds ended jobs' last lines
        #: writes them (``launcher.observe.jobs``).
        self.before_read: Callable[[], None] | None = None

    def open(self, state_id: str) -> JobLog:
        job_log = JobLog(self.folder, state_id, self.limit, self._flush_later)
        self.live[state_id] = job_log
        return job_log

    def _flush_later(self, job_log: JobLog) -> None:
        """One timer for every log with records waiting (not one per job)."""
        self._due.add(job_log)
        if self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(
                FLUSH_SECONDS, self._flush_waiting
            )

    def _flush_waiting(self) -> None:
        self._flush_timer = None
        due, self._due = self._due, set()
        for job_log in due:
            job_log._flush()  # (an ended one does nothing)

    async def close(self, job_log: JobLog) -> None:
        """The job ended: save its log (read from memory until it is saved)."""
        writing = self.close_now(job_log)
        if writing is not None:
            await writing

    def close_now(self, job_log: JobLog) -> Coroutine[Any, Any, None] | None:
        """``close`` without a task where it can: the log goes to the database's batch at
        once (None); without a database, the coroutine that writes its file."""
        ended = job_log.finish()
        if ended is None:
            return None
        if self._saver is not None:
            self._saver.add(ended)
            return None
        return self._write(ended)

    async def _write(self, ended: Ended) -> None:
        try:
            await asyncio.to_thread(
                _write_final, self.folder, ended.state_id, ended.data, ended.work_files
            )
        except OSError as exc:
            log.warning("job %s: its log could not be saved: %s", ended.state_id, exc)
        finally:
            self._saved([ended])

    def _saved(self, batch: list[Ended]) -> None:
        for ended in batch:
            job_log = self.live.get(ended.state_id)
            if job_log is not None and job_log.closed:
                del self.live[ended.state_id]

    async def aclose(self) -> None:
        """Save the ended logs still waiting (at shutdown)."""
        if self._saver is not None:
            await self._saver.flush()

    async def read(self, state_id: str) -> tuple[list[dict[str, Any]], bool] | None:
        """``(lines, truncated)`` of the job's log, ``None`` when it has none."""
        if self.before_read is not None:
            self.before_read()
        job_log = self.live.get(state_id)
        if job_log is not None:
            return job_log.snapshot()
        if not valid_state_id(state_id):
            return None
        return await asyncio.to_thread(self._read_file, state_id)

    async def follow(self, state_id: str) -> AsyncIterator[tuple[list[dict[str, Any]], bool]]:
        """Batches of ``(lines, truncated)`` until the job ends (one batch if it has)."""
        if self.before_read is not None:
            self.before_read()
        job_log = self.live.get(state_id)
        if job_log is None:
            found = await self.read(state_id)
            if found is not None:
                yield found
            return
        async for lines in job_log.follow():
            yield lines, job_log.buffer.cut

    def _read_file(self, state_id: str) -> tuple[list[dict[str, Any]], bool] | None:
        saved = self._saver.load(state_id) if self._saver is not None else None
        if saved is not None:
            return parse_records(saved[0]), saved[1]
        final = self.folder / f"{state_id}.joblog"
        try:
            lines = parse_records(final.read_bytes())
        except FileNotFoundError:
            pass
        else:
            return lines, any(_is_cut(line) for line in lines)
        try:
            head = (self.folder / f"{state_id}.joblog.head").read_bytes()
        except FileNotFoundError:
            return None
        try:  # left by a crash: head, a cut of unknown size, the last part of the tail
            tail = (self.folder / f"{state_id}.joblog.tail").read_bytes()
        except FileNotFoundError:
            return parse_records(head), False
        keep = self.limit - self.limit // 2
        if len(tail) > keep:
            tail = tail[-keep:]
            tail = tail[tail.find(b"\n") + 1 :]
        return parse_records(head + b"%d c ?\n" % now_ms() + tail), True

    def stored_bytes(self, state_id: str) -> int:
        """The bytes the job's log takes on disk (for the tenant's storage; blocking)."""
        total = 0
        if not valid_state_id(state_id):
            return 0
        for suffix in _SUFFIXES:
            with contextlib.suppress(OSError):
                total += (self.folder / f"{state_id}{suffix}").stat().st_size
        if self._saver is not None:
            total += self._saver.size(state_id)
        return total

    def remove(self, state_id: str) -> None:
        """Remove the job's log with its job record (blocking: call from a thread)."""
        if not valid_state_id(state_id):
            return
        if self._saver is not None:
            self._saver.delete(state_id)
        for suffix in _SUFFIXES:
            with contextlib.suppress(FileNotFoundError):
                (self.folder / f"{state_id}{suffix}").unlink()


def _is_cut(line: dict[str, Any]) -> bool:
    return line["stream"] == "launcher" and str(line["text"]).startswith("[... ")


def _open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)


def _write_final(folder: Path, state_id: str, data: bytes, work_files: bool = True) -> None:
    path = folder / f"{state_id}.joblog"
    tmp = folder / f"{state_id}.joblog.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if work_files:
        for suffix in (".joblog.head", ".joblog.tail"):
            with contextlib.suppress(FileNotFoundError):
                (folder / f"{state_id}{suffix}").unlink()
