"""What the crash, fuzz and load tests check after a launcher died or worked hard: states
verified by hash, nothing left of unacknowledged work, no orphaned workers. No tests here."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from launcher.client import LauncherClient
from runtime.tensor import serialize


def big_state_keys(mib: int) -> dict[str, bytes]:
    """The keys ``big_state`` provides for ``mib``."""
    block = b"\x07" * (mib << 20)
    return {"a": block, "b": block, "c": block}


def big_state_params(mib: int) -> list[dict[str, Any]]:
    return [{"name": "mib", "data": [np.array(mib, dtype=np.int64)]}]


def echo_keys(payload: np.ndarray) -> dict[str, bytes]:
    """The keys ``echo`` provides for one param ``x`` holding ``payload``."""
    return {"x": serialize(payload), "ok": b"yes"}


def echo_params(payload: np.ndarray) -> list[dict[str, Any]]:
    return [{"name": "x", "data": [payload]}]


def digests(keys: dict[str, bytes]) -> dict[str, str]:
    return {k: hashlib.sha256(v).hexdigest() for k, v in keys.items()}


def downloaded_digests(client: LauncherClient, model_id: str, state_id: str) -> dict[str, str]:
    """Each key's sha256 as served now; AssertionError if the download is refused."""
    res = client.model.get_model_state(model_id=model_id, state_id=state_id)
    assert "result" in res, res
    return {item["key"]: hashlib.sha256(item["data"]).hexdigest() for item in res["result"]["data"]}


def state_ids(client: LauncherClient, model_id: str) -> set[str]:
    res = client.model.get_models(filter={"ids": [model_id]})
    (model,) = res["result"]["models"]
    return {s["id"] for s in model["states"]}


def files_under(path: Path) -> list[str]:
    """Every file (not folder) below ``path``, relative; [] if it does not exist."""
    if not path.exists():
        return []
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if not p.is_dir())


def state_leftovers(root: Path, state_id: str) -> list[str]:
    """Anything on disk named after a state that must not exist."""
    return [
        str(p.relative_to(root))
        for p in (root / "states" / state_id, root / "tmp" / "states" / state_id)
        if p.exists()
    ]


def _belongs_to(proc: psutil.Process, root: Path, dead_pid: int) -> bool:
    cmdline = proc.cmdline()
    text = " ".join(cmdline)
    if "launcher.sandbox.zygote" in text and cmdline[-1:] == [str(dead_pid)]:
        return True
    if str(root) in text:
        return True
    try:
        return Path(proc.cwd()).is_relative_to(root)
    except (psutil.Error, OSError):
        return False


def leftover_workers(root: Path, dead_pid: int, alive_pid: int | None) -> list[str]:
    """Processes of the dead launcher (its zygote, workers run in ``root``'s models) that
    outlived it; the running launcher ``alive_pid`` and its own children are not counted."""
    keep = {os.getpid()}
    if alive_pid is not None:
        alive = psutil.Process(alive_pid)
        keep |= {alive_pid, *(c.pid for c in alive.children(recursive=True))}
    found = []
    for proc in psutil.process_iter():
        if proc.pid in keep:
            continue
        try:
            if _belongs_to(proc, root, dead_pid):
                found.append(f"{proc.pid}: {' '.join(proc.cmdline())[:200]}")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def wait_no_leftover_workers(
    root: Path, dead_pid: int, alive_pid: int | None, timeout: float = 10.0
) -> list[str]:
    """Workers die with their launcher, but not in the same instant: poll a little."""
    deadline = time.monotonic() + timeout
    while True:
        found = leftover_workers(root, dead_pid, alive_pid)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)
