"""One launcher per data root and per address, a private root, a clean refusal of a corrupt
database (issue 12 items 6, 8, 9): the second launcher exits non-zero with one clear line and
touches nothing; the first keeps serving, its jobs and run folder intact."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from launcher.client import LauncherClient
from tests.support.bounds import create
from tests.support.launcher_proc import PROJECT, LauncherProcess, running_launcher
from tests.support.specs import TEMPORARY


@pytest.fixture
def root() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="lr-") as name:
        yield Path(name)


def _serve_once(root: Path, listen: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """A second ``launcher serve`` that must refuse to start: its exit status and output."""
    return subprocess.run(
        [sys.executable, "-m", "launcher.cli", "serve", "--root", str(root), "--listen", listen],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _refused(result: subprocess.CompletedProcess[str], words: str) -> None:
    assert result.returncode != 0, result
    assert words in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def _still_serving(first: LauncherProcess) -> None:
    with LauncherClient(first.address) as client:
        res = create(client, "hello")
        assert "success" in res["result"], res


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_second_launcher_on_the_same_root_is_refused_and_touches_nothing(root: Path) -> None:
    with running_launcher(root) as first, LauncherClient(first.address) as client:
        events = client.model.create_state_stream(
            model_id="sleeper", name="long", params=[], execution_location=TEMPORARY
        )
        state_id = None
        for event in events:
            if event.get("event") == "phaseStarted" and event["phase"] == "createState":
                state_id = event["stateId"]
                break
        assert state_id is not None
        other = root.parent / f"{root.name}-2.sock"
        result = _serve_once(root, f"unix://{other}")
        _refused(result, "another launcher is already using the data root")
        assert not other.exists()
        assert (root / "run").is_dir()  # the first one's workers keep their folder
        _still_serving(first)
        creating = client.model.get_creating_states(model_id="sleeper")["result"]["states"]
        assert state_id in [s["id"] for s in creating]
        client.model.cancel_create_state(model_id="sleeper", state_id=state_id)
        final = [e for e in events if "result" in e or "error" in e]
        assert final[-1]["result"]["failed"]["error"]["code"] == "cancelled", final
    assert "launcher_terminated" not in first.log()


def test_second_launcher_on_a_live_unix_socket_is_refused(root: Path) -> None:
    with running_launcher(root) as first:
        with tempfile.TemporaryDirectory(prefix="lr2-") as other_root:
            result = _serve_once(Path(other_root), first.address)
        _refused(result, "another process is serving on it")
        assert Path(first.address[len("unix://") :]).exists()
        _still_serving(first)


def test_stale_unix_socket_of_a_dead_launcher_is_replaced(root: Path) -> None:
    path = root / "stale.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()  # bound, never listening: like a SIGKILLed launcher's socket
    with running_launcher(root, address=f"unix://{path}") as first:
        _still_serving(first)


def test_second_launcher_on_a_busy_tcp_port_is_refused(root: Path) -> None:
    address = f"127.0.0.1:{_free_port()}"
    with running_launcher(root, ["--listen", address]) as first:
        with tempfile.TemporaryDirectory(prefix="lr2-") as other_root:
            result = _serve_once(Path(other_root), address)
        _refused(result, f"cannot listen on {address}")
        # Every call still reaches the first launcher (no SO_REUSEPORT sharing).
        for _ in range(5):
            with LauncherClient(address) as client:
                assert "result" in client.model.get_models()
        _still_serving(first)


def _loose(path: Path) -> list[str]:
    """Paths under ``path`` (not models/) that others may read, write or enter."""
    found = []
    for dirpath, dirnames, filenames in os.walk(path):
        # models/ is the operator's; run/ is entered by the sandboxed workers' uid.
        dirnames[:] = [
            d for d in dirnames if Path(dirpath, d) not in (path / "models", path / "run")
        ]
        for name in [*dirnames, *filenames]:
            p = Path(dirpath, name)
            st = p.lstat()
            if not stat.S_ISLNK(st.st_mode) and not stat.S_ISSOCK(st.st_mode):
                if st.st_mode & 0o077:
                    found.append(f"{p.relative_to(path)} {oct(st.st_mode & 0o777)}")
    return found


def test_data_root_is_private(root: Path) -> None:
    with running_launcher(root) as first, LauncherClient(first.address) as client:
        res = create(client, "echo", params=[{"name": "x", "data": [np.zeros(3, np.float32)]}])
        upload = client.model.upload_state(
            model_id="echo", name="u", data=[{"key": "k", "data": b"v"}]
        )
        assert "result" in upload, upload
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
        assert stat.S_IMODE((root / "launcher.db").stat().st_mode) == 0o600
        assert _loose(root) == [], _loose(root)
        assert "result" in res


def test_existing_wide_root_is_tightened_at_start(root: Path) -> None:
    os.chmod(root, 0o755)
    (root / "logs").mkdir()
    os.chmod(root / "logs", 0o755)
    leaked = root / "notes.txt"
    leaked.write_bytes(b"secret")
    os.chmod(leaked, 0o644)
    with running_launcher(root) as first:
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
        assert stat.S_IMODE(leaked.stat().st_mode) == 0o600
        assert stat.S_IMODE((root / "logs").stat().st_mode) == 0o700
        assert leaked.read_bytes() == b"secret"
        assert "now owner-only" in first.log()
        _still_serving(first)


def test_corrupt_database_is_a_clean_start_up_error(root: Path) -> None:
    garbage = b"this is not a database" * 1000
    (root / "launcher.db").write_bytes(garbage)
    result = _serve_once(root, f"unix://{root}/s.sock")
    _refused(result, "is not a usable launcher database")
    assert (root / "launcher.db").read_bytes() == garbage  # nothing touched


def test_database_failing_its_integrity_check_is_refused(root: Path) -> None:
    with running_launcher(root) as first, LauncherClient(first.address) as client:
        for i in range(30):
            client.model.upload_state(
                model_id="echo", name=f"s{i}", data=[{"key": "k", "data": b"v" * 3000}]
            )
    db = root / "launcher.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    assert len(data) > 3 * page
    # Page 1 (the schema) stays; every later page is noise.
    data[page:] = os.urandom(len(data) - page)
    db.write_bytes(bytes(data))
    result = _serve_once(root, f"unix://{root}/s.sock")
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    assert "launcher.db" in result.stderr


def test_root_of_a_killed_launcher_is_taken_over_at_once(root: Path) -> None:
    first = LauncherProcess(root)
    first.start()
    first.stop(signal.SIGKILL)  # the lock dies with its process: nothing stale to clear
    with running_launcher(root) as second:
        _still_serving(second)
        assert "another launcher" not in second.log()
