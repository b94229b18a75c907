"""Shared benchmark machinery: run settings, statistics, timed processes, a launcher, RSS peaks."""

from __future__ import annotations

import contextlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.support.launcher_proc import LauncherProcess

BENCH_MODELS = Path(__file__).parent / "models"
PROJECT = Path(__file__).parent.parent
PROCESS_TIMEOUT = 60.0
TRIVIAL_MODEL = "bench-trivial"
INGEST_MODEL = "bench-ingest"
LOG_TAIL = 4000
NUMPY_IMPORT = [sys.executable, "-c", "import numpy"]


@dataclass(frozen=True)
class Settings:
    """How much to measure: ``quick`` shrinks every count and size for a smoke run."""

    quick: bool = False

    def count(self, full: int, quick: int) -> int:
        return quick if self.quick else full


def percentile(samples: list[float], p: float) -> float:
    """The p-th percentile (0..100), linear between closest ranks."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def time_process(argv: list[str], cwd: Path = PROJECT) -> float:
    """Seconds from spawning ``argv`` to its exit; it must exit 0."""
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, timeout=PROCESS_TIMEOUT)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{argv} exited {done.returncode}: {done.stderr[-500:]!r}")
    return elapsed


def numpy_import_times(n: int) -> list[float]:
    """The reference start: a bare interpreter importing numpy, ``n`` times."""
    return [time_process(NUMPY_IMPORT) for _ in range(n)]


@contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def running_launcher(extra_args: list[str] | None = None) -> Iterator[LauncherProcess]:
    """A real ``launcher serve`` on a Unix socket with a temporary root holding the bench models
    (plus the test and example models); stopped and removed afterwards."""
    with temp_dir("launcher") as root:
        models = root / "models"
        models.mkdir()
        for model in BENCH_MODELS.iterdir():
            if (model / "main.py").is_file():
                shutil.copytree(model, models / model.name)
        launcher = LauncherProcess(root, extra_args)
        try:
            launcher.start()
            yield launcher
        except BaseException:
            # The launcher's side of a failure (internal errors carry only a log id).
            print(f"launcher log tail:\n{launcher.log()[-LOG_TAIL:]}", file=sys.stderr)
            raise
        finally:
            if launcher.proc is not None:
                launcher.stop(timeout=30)


class RssPeak:
    """Samples a process's RSS every ``interval`` seconds in a thread; use as a context manager.

    ``baseline`` is the RSS on entry, ``peak`` the highest sample seen until exit.
    """

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self._process = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.baseline = self._process.memory_info().rss
        self.peak = self.baseline
        self.samples = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = self._process.memory_info().rss
            except psutil.Error:
                return
            self.samples += 1
            self.peak = max(self.peak, rss)
            self._stop.wait(self._interval)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


class CpuMeter:
    """CPU seconds (user + system) used since the previous ``lap`` by: the launcher process;
    its descendants with what they reaped (the zygote, keepers and workers, as far as they
    have been waited for); and this process (the clients)."""

    def __init__(self, launcher_pid: int) -> None:
        self._launcher = psutil.Process(launcher_pid)
        self._last = self._now()

    def _now(self) -> dict[str, float]:
        sandbox = 0.0
        for child in self._launcher.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                times = child.cpu_times()
                sandbox += times.user + times.system + times.children_user + times.children_system
        own = self._launcher.cpu_times()
        return {
            "launcher": own.user + own.system,
            "sandbox": sandbox,
            "clients": sum(psutil.Process().cpu_times()[:2]),
        }

    def lap(self) -> dict[str, float]:
        now = self._now()
        used = {k: now[k] - self._last[k] for k in now}
        self._last = now
        return used
