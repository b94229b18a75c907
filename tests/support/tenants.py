"""Helpers for tenant tests: keys made in a data root, a launcher with them, and a probe
that measures another tenant's cheap calls while an attack runs."""

from __future__ import annotations

import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from launcher.auth.keys import KeyStore
from launcher.client import LauncherClient
from launcher.store.db import Database
from tests.support.launcher_proc import LauncherProcess, running_launcher

#: A cheap call of a bystander tenant must answer within this, even during an attack.
GENEROUS_SECONDS = 2.0


def make_keys(root: Path, specs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Create one key per name (``KeyStore.create`` arguments); their secrets by name."""
    root.mkdir(parents=True, exist_ok=True)
    db = Database(root / "launcher.db")
    try:
        store = KeyStore(db)
        return {name: store.create(name, **spec)[1] for name, spec in specs.items()}
    finally:
        db.close()


@contextmanager
def launcher_with_keys(
    specs: dict[str, dict[str, Any]], extra_args: list[str] | None = None
) -> Iterator[tuple[LauncherProcess, dict[str, str]]]:
    root = Path(tempfile.mkdtemp(prefix="lt-"))
    try:
        keys = make_keys(root, specs)
        with running_launcher(root, extra_args) as proc:
            yield proc, keys
    finally:
        shutil.rmtree(root, ignore_errors=True)


class LatencyProbe:
    """Calls ``call`` in a loop on a thread (bounded in count) and keeps each latency."""

    def __init__(self, call: Callable[[], dict[str, Any]], max_calls: int = 2000) -> None:
        self._call = call
        self._max_calls = max_calls
        self._stop = threading.Event()
        self.latencies: list[float] = []
        self.failures: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set() and len(self.latencies) < self._max_calls:
            start = time.monotonic()
            res = self._call()
            self.latencies.append(time.monotonic() - start)
            if "result" not in res:
                self.failures.append(res)
            time.sleep(0.02)

    def __enter__(self) -> LatencyProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def check(self) -> None:
        """Served throughout: some calls made, none failed, the slowest within the bound."""
        assert self.latencies, "the bystander made no call"
        assert not self.failures, self.failures[:3]
        worst = max(self.latencies)
        assert worst < GENEROUS_SECONDS, (
            f"a bystander call took {worst:.2f} s (median {statistics.median(self.latencies):.3f})"
        )


def client(proc: LauncherProcess, secret: str | None) -> LauncherClient:
    return LauncherClient(proc.address, api_key=secret)
