"""``launcher keys`` for tenants, against a running launcher: ``--tenant`` groups keys,
``--admin`` sees every tenant, ``keys delete`` removes a key and ``keys delete --all`` is
the way back to a launcher without keys (whose objects stay)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from launcher.client import LauncherClient
from tests.support.launcher_proc import running_launcher

SPEC = {"cpus": 1, "memoryMebibytes": 256}


def keys(root: Path, *argv: str) -> tuple[int, Any, str]:
    done = subprocess.run(
        [sys.executable, "-m", "launcher", "keys", *argv, "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = json.loads(done.stdout) if done.stdout.strip() else None
    return done.returncode, out, done.stderr


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the launcher did not see the key change"
        time.sleep(0.05)


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="lk-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def launcher_ids(c: LauncherClient) -> set[str]:
    listed = c.persistent_launcher.get_persistent_launchers(limit=1000)["result"]
    return {p["id"] for p in listed["persistentLaunchers"]}


def test_tenant_and_admin_keys_then_back_to_no_keys(root: Path) -> None:
    code, ci, _ = keys(root, "create", "ci", "--tenant", "acme")
    assert code == 0 and ci["tenant"] == "acme" and ci["admin"] is False
    _, dev, _ = keys(root, "create", "dev", "--tenant", "acme")
    _, other, _ = keys(root, "create", "other")
    assert other["tenant"] == "other"  # a key's tenant defaults to its name
    _, ops, _ = keys(root, "create", "ops", "--admin")
    assert ops["admin"] is True
    _, listed, _ = keys(root, "list")
    assert {(k["name"], k["tenant"], k["admin"]) for k in listed} == {
        ("ci", "acme", False),
        ("dev", "acme", False),
        ("other", "other", False),
        ("ops", "ops", True),
    }
    assert all("key" not in k for k in listed)
    with running_launcher(root) as proc:
        with (
            LauncherClient(proc.address, api_key=ci["key"]) as c_ci,
            LauncherClient(proc.address, api_key=dev["key"]) as c_dev,
            LauncherClient(proc.address, api_key=other["key"]) as c_other,
            LauncherClient(proc.address, api_key=ops["key"]) as c_ops,
        ):
            made = c_ci.persistent_launcher.create_persistent_launcher(name="acme's", spec=SPEC)
            launcher_id = made["result"]["persistentLauncherId"]
            assert launcher_id in launcher_ids(c_dev)  # same tenant, another key
            assert launcher_id in launcher_ids(c_ops)
            assert launcher_id not in launcher_ids(c_other)
            code, gone, _ = keys(root, "delete", dev["id"])
            assert code == 0 and gone["id"] == dev["id"]
            eventually(lambda: "error" in c_dev.persistent_launcher.get_persistent_launchers())
            assert c_dev.persistent_launcher.get_persistent_launchers() == {
                "error": {"code": "bad_credentials"}
            }
            assert launcher_id in launcher_ids(c_ci)  # the tenant's objects stay
        code, _, err = keys(root, "delete", dev["id"])
        assert code == 1 and "no key with id" in err
        code, deleted, _ = keys(root, "delete", "--all")
        assert code == 0 and deleted == {"deleted": 3}
        with LauncherClient(proc.address) as open_client:
            eventually(
                lambda: "result" in open_client.persistent_launcher.get_persistent_launchers()
            )
            assert launcher_id in launcher_ids(open_client)  # no keys: one tenant sees all


def test_bad_tenant_options_are_refused(root: Path) -> None:
    code, _, err = keys(root, "create", "x", "--tenant", "")
    assert code == 2 and "tenant" in err
    code, _, err = keys(root, "delete")
    assert code == 2
    _, listed, _ = keys(root, "list")
    assert listed == []  # nothing was made


def test_ownership_survives_a_killed_launcher(root: Path) -> None:
    _, alice, _ = keys(root, "create", "alice")
    _, bob, _ = keys(root, "create", "bob")
    with running_launcher(root) as proc:
        with LauncherClient(proc.address, api_key=alice["key"]) as c:
            made = c.persistent_launcher.create_persistent_launcher(name="kept", spec=SPEC)
            launcher_id = made["result"]["persistentLauncherId"]
        proc.stop(signal.SIGKILL)
    with running_launcher(root) as proc:
        with LauncherClient(proc.address, api_key=bob["key"]) as c:
            assert launcher_id not in launcher_ids(c)
            denied = c.persistent_launcher.delete_persistent_launcher(
                persistent_launcher_id=launcher_id
            )
            assert denied == {"error": {"code": "access_denied"}}
        with LauncherClient(proc.address, api_key=alice["key"]) as c:
            assert launcher_id in launcher_ids(c)
