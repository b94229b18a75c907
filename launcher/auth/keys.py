"""API keys at rest: the ``api_keys`` table of ``launcher.db`` and the key format.

A key is ``lk_`` followed by 32 random bytes (URL-safe base64). Only its sha256 is stored:
keys are high-entropy, so a plain hash is enough to make a stolen database useless for
calling the launcher. Revoking a key keeps its row (marked revoked), so that revoking the
last key does not silently turn authentication off; deleting a key removes its row, and
deleting every key (``launcher keys delete --all``) is the way back to a launcher without
keys. Every key belongs to a tenant (default: its own name); an admin key sees every
tenant's objects.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
from dataclasses import dataclass

from launcher.store.db import Database
from launcher.store.models import valid_model_id

KEY_PREFIX = "lk_"
_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        models TEXT,
        rate_per_second REAL,
        max_stored_bytes INTEGER,
        max_concurrent_jobs INTEGER,
        revoked_at REAL,
        tenant TEXT,
        admin INTEGER NOT NULL DEFAULT 0
    )""",
]
#: Columns added after the first release, for tables made before them.
_ADDED_COLUMNS = {"tenant": "TEXT", "admin": "INTEGER NOT NULL DEFAULT 0"}
MAX_NAME_LENGTH = 100


@dataclass(frozen=True)
class ApiKey:
    """One key's identity and permissions (never its secret)."""

    id: str
    name: str
    created_at: float
    #: The models the key may use; None for all of them ("*").
    models: frozenset[str] | None = None
    rate_per_second: float | None = None
    max_stored_bytes: int | None = None
    max_concurrent_jobs: int | None = None
    revoked_at: float | None = None
    #: The tenant whose datasets, launchers, states and snapshots the key sees and makes.
    tenant: str = ""
    #: An admin key sees and uses every tenant's objects.
    admin: bool = False

    def __post_init__(self) -> None:
        if not self.tenant:
            object.__setattr__(self, "tenant", self.name)

    def may_use(self, model_id: str) -> bool:
        return self.models is None or model_id in self.models

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "createdAt": round(self.created_at * 1000),  # integer Unix milliseconds
            "models": "*" if self.models is None else sorted(self.models),
            "ratePerSecond": self.rate_per_second,
            "maxStoredBytes": self.max_stored_bytes,
            "maxConcurrentJobs": self.max_concurrent_jobs,
            "revokedAt": None if self.revoked_at is None else round(self.revoked_at * 1000),
            "tenant": self.tenant,
            "admin": self.admin,
        }


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_models(text: str) -> frozenset[str] | None:
    """``*`` for every model, else a comma-separated list of model ids."""
    if text.strip() == "*":
        return None
    models = [m.strip() for m in text.split(",")]
    for model in models:
        if not valid_model_id(model):
            raise ValueError(
                f"invalid model id {model!r} in --models: expected ids such as a,b or *"
            )
    return frozenset(models)


def _check_limits(key: ApiKey) -> None:
    name = key.name
    if not name.strip() or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise ValueError(f"a key name is 1 to {MAX_NAME_LENGTH} printable characters: {name!r}")
    if key.rate_per_second is not None and not key.rate_per_second > 0:
        raise ValueError(f"the rate must be positive, got {key.rate_per_second}")
    if key.max_stored_bytes is not None and key.max_stored_bytes < 0:
        raise ValueError(f"--max-stored-bytes must be at least 0, got {key.max_stored_bytes}")
    tenant = key.tenant
    if not tenant.strip() or len(tenant) > MAX_NAME_LENGTH or not tenant.isprintable():
        raise ValueError(
            f"a tenant name is 1 to {MAX_NAME_LENGTH} printable characters: {tenant!r}"
        )
    if key.max_concurrent_jobs is not None and key.max_concurrent_jobs < 1:
        raise ValueError(f"--max-concurrent-jobs must be at least 1, got {key.max_concurrent_jobs}")


def _from_row(row: sqlite3.Row) -> ApiKey:
    models = None if row["models"] is None else frozenset(json.loads(row["models"]))
    return ApiKey(
        id=row["id"],
        name=row["name"],
        created_at=row["created_at"],
        models=models,
        rate_per_second=row["rate_per_second"],
        max_stored_bytes=row["max_stored_bytes"],
        max_concurrent_jobs=row["max_concurrent_jobs"],
        revoked_at=row["revoked_at"],
        tenant=row["tenant"] or row["name"],
        admin=bool(row["admin"]),
    )


class KeyStore:
    """Create, list, revoke and look up keys in ``launcher.db``."""

    def __init__(self, db: Database) -> None:
        self._db = db
        db.register_schema("auth.api_keys", _SCHEMA)
        self._add_columns()

    def _add_columns(self) -> None:
        with self._db.transaction() as conn:
            have = {r["name"] for r in conn.execute("PRAGMA table_info(api_keys)")}
            for column, kind in _ADDED_COLUMNS.items():
                if column not in have:  # a fixed name and type from _ADDED_COLUMNS
                    conn.execute(f"ALTER TABLE api_keys ADD COLUMN {column} {kind}")

    def create(
        self,
        name: str,
        models: frozenset[str] | None = None,
        rate_per_second: float | None = None,
        max_stored_bytes: int | None = None,
        max_concurrent_jobs: int | None = None,
        tenant: str | None = None,
        admin: bool = False,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret (shown once; only the hash is kept)."""
        if tenant is not None and (not tenant.strip() or not tenant.isprintable()):
            raise ValueError(f"--tenant must be a printable, non-empty name: {tenant!r}")
        key = ApiKey(
            id="key_" + secrets.token_hex(8),
            name=name,
            created_at=time.time(),
            models=models,
            rate_per_second=rate_per_second,
            max_stored_bytes=max_stored_bytes,
            max_concurrent_jobs=max_concurrent_jobs,
            tenant=tenant or name,
            admin=admin,
        )
        _check_limits(key)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO api_keys (id, name, hash, created_at, models, rate_per_second,"
                " max_stored_bytes, max_concurrent_jobs, tenant, admin)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key.id,
                    key.name,
                    hash_key(secret),
                    key.created_at,
                    None if models is None else json.dumps(sorted(models)),
                    rate_per_second,
                    max_stored_bytes,
                    max_concurrent_jobs,
                    key.tenant,
                    int(admin),
                ),
            )
        return key, secret

    def list(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        rows = self._db.connect().execute("SELECT * FROM api_keys ORDER BY created_at, id")
        return [_from_row(r) for r in rows]

    def revoke(self, key_id: str) -> ApiKey:
        """Mark the key revoked; ``KeyError`` if no key has that id."""
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
                (time.time(), key_id),
            )
            if cursor.rowcount == 0:
                raise KeyError(key_id)
            row = conn.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return _from_row(row)

    def delete(self, key_id: str) -> ApiKey:
        """Remove the key's row; ``KeyError`` if no key has that id. Once no row is left
        (revoked keys count), the launcher is open again, as it was before the first key."""
        with self._db.transaction() as conn:
            row = conn.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
            if row is None:
                raise KeyError(key_id)
            conn.execute("DELETE FROM api_keys WHERE id = ?", (key_id,))
        return _from_row(row)

    def delete_all(self) -> int:
        """Remove every key (the way back to no authentication); how many there were."""
        with self._db.transaction() as conn:
            return conn.execute("DELETE FROM api_keys").rowcount

    def snapshot(self) -> tuple[bool, dict[str, ApiKey]]:
        """``(enabled, {hash: key})``: enabled once any key was created; live keys by hash."""
        rows = self._db.connect().execute("SELECT * FROM api_keys").fetchall()
        live = {r["hash"]: _from_row(r) for r in rows if r["revoked_at"] is None}
        return bool(rows), live

    def enabled(self) -> bool:
        """Whether authentication is on: some key was ever created."""
        return self._db.connect().execute("SELECT 1 FROM api_keys LIMIT 1").fetchone() is not None
