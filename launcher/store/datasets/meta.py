"""Dataset metadata in SQLite: the schema, and rows to and from the store's dataclasses.

One row per dataset (its current version, entry count and byte size) and one per key (its
definition, and where its data file stands: generation and committed end). Everything the
store commits goes through ``insert`` and ``switch_version``, inside its caller's transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from launcher.errors import dataset_not_found
from launcher.store.datasets.rules import KeyDef, KeyRules

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS datasets (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        created_at REAL NOT NULL,
        version_id TEXT NOT NULL,
        entries INTEGER NOT NULL,
        byte_size INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS dataset_keys (
        dataset_id TEXT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        name TEXT NOT NULL,
        required INTEGER NOT NULL,
        shape TEXT,
        allowed_types TEXT NOT NULL,
        data_gen INTEGER NOT NULL,
        data_end INTEGER NOT NULL,
        PRIMARY KEY (dataset_id, position)
    )""",
]


@dataclass(frozen=True)
class DatasetInfo:
    id: str
    name: str
    description: str
    created_at: float
    keys: tuple[KeyDef, ...]
    entries: int
    byte_size: int
    version_id: str


@dataclass(frozen=True)
class KeyFile:
    """Where a key's data file stands: ``key<pos>.<gen>.data``, committed up to ``end``."""

    gen: int
    end: int


@dataclass(frozen=True)
class Current:
    """A dataset's committed state: its row plus its keys' definitions and data files."""

    info: DatasetInfo
    files: tuple[KeyFile, ...]


def insert(conn: sqlite3.Connection, info: DatasetInfo) -> None:
    conn.execute(
        "INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            info.id,
            info.name,
            info.description,
            info.created_at,
            info.version_id,
            info.entries,
            info.byte_size,
        ),
    )
    conn.executemany(
        "INSERT INTO dataset_keys VALUES (?, ?, ?, ?, ?, ?, 0, 0)",
        [
            (
                info.id,
                pos,
                k.name,
                int(k.required),
                None if k.rules.shape is None else json.dumps(list(k.rules.shape)),
                json.dumps(list(k.rules.allowed_types)),
            )
            for pos, k in enumerate(info.keys)
        ],
    )


def current(conn: sqlite3.Connection, dataset_id: str) -> Current:
    row = conn.execute("SELECT * FROM datasets WHERE id = ?", (dataset_id,)).fetchone()
    if row is None:
        raise dataset_not_found(dataset_id)
    return _current(conn, row)


def page(
    conn: sqlite3.Connection, offset: int, limit: int, ids: Sequence[str] | None
) -> tuple[list[DatasetInfo], int]:
    where, args = "", []
    if ids is not None:
        where = f"WHERE id IN ({', '.join('?' * len(ids))})"
        args = list(ids)
    total = conn.execute(f"SELECT count(*) FROM datasets {where}", args).fetchone()[0]
    rows = conn.execute(
        f"SELECT * FROM datasets {where} ORDER BY created_at, id LIMIT ? OFFSET ?",
        [*args, limit, offset],
    ).fetchall()
    return [_current(conn, r).info for r in rows], total


def all_current(conn: sqlite3.Connection) -> list[Current]:
    return [_current(conn, r) for r in conn.execute("SELECT * FROM datasets").fetchall()]


def switch_version(
    conn: sqlite3.Connection,
    dataset_id: str,
    version_id: str,
    entries: int,
    byte_size: int,
    files: Sequence[KeyFile],
) -> None:
    conn.execute(
        "UPDATE datasets SET version_id = ?, entries = ?, byte_size = ? WHERE id = ?",
        (version_id, entries, byte_size, dataset_id),
    )
    conn.executemany(
        "UPDATE dataset_keys SET data_gen = ?, data_end = ? WHERE dataset_id = ? AND position = ?",
        [(f.gen, f.end, dataset_id, pos) for pos, f in enumerate(files)],
    )


def delete(conn: sqlite3.Connection, dataset_id: str) -> bool:
    return conn.execute("DELETE FROM datasets WHERE id = ?", (dataset_id,)).rowcount > 0


def _current(conn: sqlite3.Connection, row: sqlite3.Row) -> Current:
    keys = conn.execute(
        "SELECT * FROM dataset_keys WHERE dataset_id = ? ORDER BY position", (row["id"],)
    ).fetchall()
    definitions = tuple(
        KeyDef(
            k["name"],
            bool(k["required"]),
            KeyRules(
                None if k["shape"] is None else tuple(json.loads(k["shape"])),
                tuple(json.loads(k["allowed_types"])),
            ),
        )
        for k in keys
    )
    info = DatasetInfo(
        row["id"],
        row["name"],
        row["description"],
        row["created_at"],
        definitions,
        row["entries"],
        row["byte_size"],
        row["version_id"],
    )
    return Current(info, tuple(KeyFile(k["data_gen"], k["data_end"]) for k in keys))
