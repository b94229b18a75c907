"""Measurement 1, worker start: ``python -m runtime`` from spawn to ``modelSessionInitialized``.

The host end is the tests' ``Host`` (a real Unix socket). References, same run: a bare
``python -c "import numpy"`` to its exit, and the official ``python -m decthings_model`` worker
started the same way.
"""

from __future__ import annotations

import time

from bench.common import BENCH_MODELS, TRIVIAL_MODEL, Settings, median, numpy_import_times, temp_dir
from bench.report import Figure
from tests.support.host import OFFICIAL_COMMAND, RUNTIME_COMMAND, Host

MAIN_PY = BENCH_MODELS / TRIVIAL_MODEL / "main.py"


def _start_times(command: list[str], n: int) -> list[float]:
    times = []
    for i in range(n):
        with temp_dir(f"worker{i}") as folder:
            start = time.perf_counter()
            host = Host(folder, command=command, timeout=30)
            try:
                host.initialize(MAIN_PY)
                times.append(time.perf_counter() - start)
            finally:
                host.close()
    return times


def measure(settings: Settings) -> list[Figure]:
    n = settings.count(10, 1)
    # Interleaved rounds, so that a slow patch of the machine hits every series alike.
    ours: list[float] = []
    official: list[float] = []
    numpy_ref: list[float] = []
    for _ in range(n):
        numpy_ref += numpy_import_times(1)
        ours += _start_times(RUNTIME_COMMAND, 1)
        official += _start_times(OFFICIAL_COMMAND, 1)
    reference = median(numpy_ref) * 1000
    detail = {"samples": n, "numpy_import_ms": [t * 1000 for t in numpy_ref]}
    return [
        Figure(
            "1. worker start, python -m runtime (median)",
            median(ours) * 1000,
            "ms",
            "import numpy",
            reference,
            detail={**detail, "samples_ms": [t * 1000 for t in ours]},
        ),
        Figure(
            "1. worker start, official decthings_model (median)",
            median(official) * 1000,
            "ms",
            "import numpy",
            reference,
            detail={**detail, "samples_ms": [t * 1000 for t in official]},
        ),
    ]
