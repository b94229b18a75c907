"""Crash safety: a process creating a state is SIGKILLed at each step of the commit; after
``reconcile`` the state is either complete (hash-verified) or absent, with no leftovers."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from launcher import outcomes as oc
from launcher.store.db import Database
from launcher.store.jobs import JobRecords
from launcher.store.states import StateNotFound, StateStore

REPO = Path(__file__).resolve().parents[2]
KEYS = {"weights": 3 << 20, "bias": 4096, "empty": 0}

# The child writes a state as the job runner does and kills itself at the step named in argv.
CHILD = r"""
import contextlib, os, signal, sys
from pathlib import Path
from launcher.store.db import Database
from launcher.store.jobs import JobRecords
from launcher.store.states import StateStore

root, point = Path(sys.argv[1]), sys.argv[2]
keys = {"weights": 3 << 20, "bias": 4096, "empty": 0}

def die():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)

def data(key, size):
    return (key.encode() * (size // len(key) + 1))[:size]

db = Database(root / "launcher.db")
store = StateStore(root, db)
JobRecords(db).started("s-crash", "m", "crashing", 1.0)
pending = store.begin("m", "crashing", state_id="s-crash")
for key, size in keys.items():
    writer = pending.key_writer(key)
    body = data(key, size)
    half = len(body) // 2
    writer.write(body[:half])
    if point == "mid_write" and key == "bias":
        die()
    writer.write(body[half:])
    writer.finish()
if point == "before_commit":
    die()
real_transaction = db.transaction
if point == "after_rename":
    db.transaction = die
if point == "before_sql_commit":
    @contextlib.contextmanager
    def dying_transaction():
        with real_transaction() as conn:
            yield conn
            die()
    db.transaction = dying_transaction
pending.commit()
print("committed", flush=True)
die()
"""


def _data(key: str, size: int) -> bytes:
    return (key.encode() * (size // len(key) + 1))[:size]


def _leftovers(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("point", "committed"),
    [
        ("mid_write", False),
        ("before_commit", False),
        ("after_rename", False),
        ("before_sql_commit", False),
        ("after_commit", True),
    ],
)
def test_killed_state_creation_leaves_all_or_nothing(
    tmp_path: Path, point: str, committed: bool
) -> None:
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), point],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert ("committed" in child.stdout) == committed
    # Each crash point leaves files behind for reconcile to judge.
    assert _leftovers(tmp_path / "tmp") + _leftovers(tmp_path / "states")

    db = Database(tmp_path / "launcher.db")
    store = StateStore(tmp_path, db)
    store.reconcile()
    assert JobRecords(db).reconcile(now=2.0) == 1
    status, result = JobRecords(db).get("m", "s-crash") or ("", None)
    assert status == "finished" and result is not None

    assert _leftovers(tmp_path / "tmp") == []
    if not committed:
        with pytest.raises(StateNotFound):
            store.get("m", "s-crash")
        assert _leftovers(tmp_path / "states") == []
        assert store.active_state_id("m") is None
        assert result.outcome == oc.LauncherTerminated()
        return
    record = store.get("m")
    assert record.id == "s-crash"
    assert {k.key: k.byte_size for k in record.keys} == KEYS
    for key, size in KEYS.items():
        with store.open_key("m", "s-crash", key) as reader:
            assert reader.read_all() == _data(key, size)
    assert result.outcome == oc.Success("s-crash")
