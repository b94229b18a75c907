"""Per-tenant quotas: stored bytes (reserved before they are written) and concurrent jobs.

**Stored bytes** are everything a tenant keeps in the data root: the keys of its committed
states, its datasets' entries, its snapshots' keys, plus what is being written right now
(uploads, dataset additions, the spooled inline params of its running jobs, and the keys a
worker provides). Every writer reserves its bytes first (``QuotaLedger.reserve``, with the
declared size when it is known) and may grow the reservation while it streams
(``Reservation.charge``); a reservation that would take the tenant above the key's
``--max-stored-bytes`` is refused with ``quota_exceeded`` and nothing of that write is kept.
Reserving reads the committed total and adds every live reservation under one lock, and a
reservation is released only after its bytes are committed (or thrown away), so concurrent
writers of one tenant never end above its quota. A quota of 0 still allows empty writes.

**Concurrent jobs** are counted per key: createState calls still in intake plus the
accepted jobs of the key that have not ended.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from launcher.auth.keys import ApiKey
from launcher.auth.owners import DEFAULT_TENANT
from launcher.errors import Denied
from launcher.store.db import Database

log = logging.getLogger("launcher.auth")

#: A reservation that grows while it streams grows by at least this much at a time, so a
#: stream of small writes reads the committed total only now and then.
GROW_STEP = 1 << 20

# Each: the bytes of one kind of object, grouped by owning tenant (no owner row: default).
_STORED = (
    "SELECT COALESCE(SUM(k.byte_size), 0) FROM state_keys k"
    " LEFT JOIN owners o ON o.kind = 'state' AND o.id = k.state_id"
    " WHERE COALESCE(o.tenant, ?) = ?",
    "SELECT COALESCE(SUM(d.byte_size), 0) FROM datasets d"
    " LEFT JOIN owners o ON o.kind = 'dataset' AND o.id = d.id"
    " WHERE COALESCE(o.tenant, ?) = ?",
    "SELECT COALESCE(SUM(k.byte_size), 0) FROM snapshot_keys k"
    " LEFT JOIN owners o ON o.kind = 'snapshot' AND o.id = k.snapshot_id"
    " WHERE COALESCE(o.tenant, ?) = ?",
)
#: Job logs: part of what a tenant stores (``launcher_stored_bytes``), but not charged to
#: ``--max-stored-bytes``: each is bounded by ``--job-log-bytes``, set by the operator.
_JOB_LOGS = (
    "SELECT COALESCE(SUM(length(j.data)), 0) FROM job_logs j"
    " LEFT JOIN owners o ON o.kind = 'state' AND o.id = j.state_id"
    " WHERE COALESCE(o.tenant, ?) = ?"
)


def quota_error(tenant: str, limit: int, wanted: int, stored: int) -> Denied:
    """``quota_exceeded`` (only its code, as the seed has it; the detail is logged and kept
    in ``detail`` for a job's failure)."""
    detail = (
        f"tenant {tenant!r} stores {stored} bytes (counting writes in progress) of its "
        f"{limit}-byte quota; {wanted} more bytes do not fit"
    )
    log.info("quota_exceeded: %s", detail)
    error = Denied("quota_exceeded")
    error.detail = detail  # type: ignore[attr-defined]
    return error


class StoredBytes:
    """What a tenant has committed: states, datasets and snapshots, in bytes."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def of(self, tenant: str, with_job_logs: bool = False) -> int:
        """The tenant's committed bytes (what its quota counts); with ``with_job_logs``, its
        jobs' saved logs too (what it stores in all)."""
        conn = self._db.connect()
        total = 0
        for query in (*_STORED, _JOB_LOGS) if with_job_logs else _STORED:
            try:
                total += int(conn.execute(query, (DEFAULT_TENANT, tenant)).fetchone()[0])
            except sqlite3.OperationalError:  # that store's tables were never made
                continue
        return total


class Reservation:
    """Bytes held for one write in progress; ``release`` once they are committed or gone."""

    def __init__(self, ledger: QuotaLedger | None, tenant: str, limit: int | None, size: int):
        self._ledger = ledger
        self.tenant = tenant
        self.limit = limit
        self.reserved = size
        #: Bytes written or held so far (the declared size counts from the start).
        self.used = size
        #: The refusal of a ``charge`` that went past the quota (the write was stopped).
        self.exceeded: Denied | None = None

    def charge(self, n: int) -> None:
        """Count ``n`` more bytes written; ``Denied(quota_exceeded)`` past the quota (and
        ``exceeded`` set). May read the database: call it off the event loop."""
        self.used += n
        if self._released:
            self.exceeded = Denied("quota_exceeded")
            raise self.exceeded
        if self._ledger is not None and self.used > self.reserved:
            try:
                self._ledger._grow(self, self.used)
            except Denied as e:
                self.exceeded = e
                raise

    def release(self) -> None:
        """Give the bytes back (idempotent). A reservation with a quota refuses every later
        ``charge``: its write is over."""
        if self._ledger is not None:
            self._ledger._release(self)
            self._ledger = None
            self._released = True

    _released = False


class QuotaLedger:
    """Live reservations per tenant, checked with the committed total under one lock."""

    def __init__(self, db: Database) -> None:
        self.stored = StoredBytes(db)
        self._lock = threading.Lock()
        self._reserved: Counter[str] = Counter()

    def reserve(
        self, tenant: str, limit: int | None, size: int, growing: bool = False
    ) -> Reservation:
        """Hold ``size`` bytes for ``tenant`` (blocking; see ``areserve``). ``growing``: a
        write of unknown size that will ``charge`` as it goes (a job's state), admitted only
        while the tenant has room left beyond ``size``."""
        if size < 0:
            raise ValueError("a reservation is at least 0 bytes")
        if limit is None:
            return Reservation(None, tenant, None, size)
        with self._lock:
            self._admit(tenant, limit, size, growing)
            self._reserved[tenant] += size
        return Reservation(self, tenant, limit, size)

    async def areserve(
        self, tenant: str, limit: int | None, size: int, growing: bool = False
    ) -> Reservation:
        if limit is None:
            return Reservation(None, tenant, None, size)
        return await asyncio.to_thread(self.reserve, tenant, limit, size, growing)

    def in_use(self, tenant: str) -> int:
        """Committed plus reserved bytes of ``tenant``."""
        with self._lock:
            return self.stored.of(tenant) + self._reserved[tenant]

    def _admit(self, tenant: str, limit: int, size: int, growing: bool) -> None:
        if size == 0 and not growing:
            return  # an empty write never takes a tenant above its quota
        taken = self.stored.of(tenant) + self._reserved[tenant]
        if taken + size > limit or (growing and taken + size >= limit):
            raise quota_error(tenant, limit, size, taken)

    def _grow(self, reservation: Reservation, needed: int) -> None:
        assert reservation.limit is not None
        with self._lock:
            taken = self.stored.of(reservation.tenant) + self._reserved[reservation.tenant]
            headroom = reservation.limit - taken + reservation.reserved
            if needed > headroom:
                raise quota_error(
                    reservation.tenant,
                    reservation.limit,
                    needed - reservation.reserved,
                    taken,
                )
            size = min(headroom, max(needed, reservation.reserved + GROW_STEP))
            self._reserved[reservation.tenant] += size - reservation.reserved
            reservation.reserved = size

    def _release(self, reservation: Reservation) -> None:
        with self._lock:
            self._reserved[reservation.tenant] -= reservation.reserved
            if self._reserved[reservation.tenant] <= 0:
                del self._reserved[reservation.tenant]
            reservation.reserved = 0


class JobQuota:
    """Concurrent createState jobs per key. ``is_running(state_id)`` asks the job manager."""

    def __init__(self, is_running: Callable[[str], bool]) -> None:
        self._is_running = is_running
        self._intakes: Counter[str] = Counter()
        self._jobs: dict[str, set[str]] = {}

    def count(self, key_id: str) -> int:
        jobs = self._jobs.get(key_id, set())
        jobs.intersection_update({s for s in jobs if self._is_running(s)})
        if not jobs:
            self._jobs.pop(key_id, None)
        return self._intakes[key_id] + len(jobs)

    def try_enter(self, key: ApiKey) -> bool:
        """Take a place for a new call, if the key has one free; pair with ``accepted`` or
        ``left``."""
        if key.max_concurrent_jobs is not None and self.count(key.id) >= key.max_concurrent_jobs:
            return False
        self._intakes[key.id] += 1
        return True

    def accepted(self, key_id: str, state_id: str) -> None:
        self._leave_intake(key_id)
        self._jobs.setdefault(key_id, set()).add(state_id)

    def left(self, key_id: str) -> None:
        """The call ended without a job (refused in intake, or the client went away)."""
        self._leave_intake(key_id)

    def _leave_intake(self, key_id: str) -> None:
        self._intakes[key_id] -= 1
        if self._intakes[key_id] <= 0:
            del self._intakes[key_id]


class ChargedState:
    """A job's state sink whose keys' bytes are charged to ``reservation`` as the worker
    provides them: past the quota a write fails, the job stops and nothing is kept."""

    def __init__(self, pending: Any, reservation: Reservation) -> None:
        self._pending = pending
        self._reservation = reservation

    def key_writer(self, key: str) -> _ChargedKey:
        return _ChargedKey(self._pending.key_writer(key), self._reservation)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pending, name)


class _ChargedKey:
    def __init__(self, writer: Any, reservation: Reservation) -> None:
        self._writer = writer
        self._reservation = reservation

    def write(self, data: bytes | memoryview) -> None:
        self._reservation.charge(data.nbytes if isinstance(data, memoryview) else len(data))
        self._writer.write(data)

    def finish(self) -> object:
        return self._writer.finish()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)
