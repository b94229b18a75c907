"""Who may see and use what: the one access check every service (gRPC and HTTP) calls.

A caller is a tenant (``Caller``): the tenant of its API key, or, on a launcher without
keys, the one default tenant, which sees everything. Datasets, persistent launchers,
states and snapshots belong to the tenant that made them (``launcher.auth.owners``); a
caller may use an object when it is an admin or the object's tenant is its own, and
otherwise gets ``access_denied`` (lists leave such objects out). An id that names nothing
passes the check, so the store answers ``..._not_found`` as it would without tenants.

Models are not owned: which models a key may use is its grant (``--models``), checked by
the gRPC interceptor (``launcher.api.interceptor``). The caller of the request being served
is in a context variable (``current()``), set by that interceptor (or the HTTP front door
with ``use``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any, TypeVar

from launcher.auth.keys import ApiKey
from launcher.auth.owners import DEFAULT_TENANT, Owners
from launcher.errors import Denied
from launcher.store.db import Database

log = logging.getLogger("launcher.auth")
T = TypeVar("T")


@dataclass(frozen=True)
class Caller:
    """Who is calling: a tenant, whether it sees everything, and its key (None without keys)."""

    tenant: str
    admin: bool = False
    key: ApiKey | None = None

    @property
    def key_id(self) -> str | None:
        return None if self.key is None else self.key.id

    @property
    def max_stored_bytes(self) -> int | None:
        return None if self.key is None else self.key.max_stored_bytes

    @classmethod
    def of_key(cls, key: ApiKey) -> Caller:
        return cls(tenant=key.tenant, admin=key.admin, key=key)


#: The caller of a launcher without keys: the one tenant, which sees everything.
OPEN = Caller(DEFAULT_TENANT, admin=True)
_current: ContextVar[Caller] = ContextVar("launcher_caller", default=OPEN)


def current() -> Caller:
    """The caller of the request being served (``OPEN`` when no key is in use)."""
    return _current.get()


def use(caller: Caller) -> Token[Caller]:
    """Make ``caller`` the current one for this task (and the threads it starts)."""
    return _current.set(caller)


def restore(token: Token[Caller]) -> None:
    """Undo ``use`` (a front door serving several calls in one task, such as HTTP keep-alive,
    must not carry one call's caller into the next)."""
    try:
        _current.reset(token)
    except ValueError:  # finalized in another context: that context ends with its task
        pass


def denied(kind: str, object_id: str, caller: Caller) -> Denied:
    """``access_denied`` (only its code, as the seed has it; the detail is logged)."""
    log.info(
        "access_denied: tenant %r (key %s) asked for the %s %s of another tenant",
        caller.tenant,
        caller.key_id,
        kind,
        object_id,
    )
    return Denied("access_denied")


class AccessCheck:
    """The check itself, over the ``owners`` table of ``launcher.db``. The sync methods do
    database reads (call them from a thread); the ``a``-prefixed ones run them in one."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.owners = Owners(db)

    # ---- blocking ----

    def may_use(self, caller: Caller, kind: str, object_id: str) -> bool:
        if caller.admin:
            return True
        owner = self.owners.tenant_of(kind, object_id)
        return owner is None or owner == caller.tenant

    def check(self, caller: Caller, kind: str, object_id: str) -> None:
        """``access_denied`` unless ``caller`` may use the object (or it does not exist)."""
        if not self.may_use(caller, kind, object_id):
            raise denied(kind, object_id, caller)

    def visible(self, caller: Caller, kind: str, ids: Iterable[str]) -> list[str]:
        """``ids`` less those of other tenants, in order."""
        ids = list(ids)
        if caller.admin:
            return ids
        owners = self.owners.tenants_of(kind, ids)
        return [i for i in ids if owners.get(i, DEFAULT_TENANT) == caller.tenant]

    def owned(self, caller: Caller, kind: str) -> set[str] | None:
        """Every id of ``kind`` the caller may see; None for all (an admin)."""
        return None if caller.admin else self.owners.ids_of(kind, caller.tenant)

    def own(self, caller: Caller, kind: str, object_id: str) -> None:
        """Record that ``caller``'s tenant owns a new object."""
        self.owners.record(kind, object_id, caller.tenant)

    def create_owned(self, caller: Caller, kind: str, make: Callable[[], T], id_of: Any) -> T:
        """``make()`` and the owner row of what it made in one transaction of
        ``launcher.db`` (the store's own transaction nests in it), so the object never exists
        without its owner. ``make`` must use the same database from this thread."""
        with self._db.transaction():
            made = make()
            self.own(caller, kind, id_of(made))
        return made

    # ---- from the event loop ----

    async def acheck(self, caller: Caller, kind: str, object_id: str) -> None:
        if not caller.admin:
            await asyncio.to_thread(self.check, caller, kind, object_id)

    async def aown(self, caller: Caller, kind: str, object_id: str) -> None:
        await asyncio.to_thread(self.own, caller, kind, object_id)
