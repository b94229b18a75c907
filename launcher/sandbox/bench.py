"""``python -m launcher.sandbox.bench``: per-worker cost of the sandbox, with and without
isolation, in the same run, against a bare ``python -c "import numpy"`` reference.

Each figure is the median wall time from asking for a worker to having its exit status.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

from launcher.sandbox import SandboxConfig, WorkerPlan, create_sandbox
from launcher.sandbox.config import LAYER_NAMES
from launcher.sandbox.layered import LayeredSandbox
from launcher.spec import LauncherSpec

ROUNDS = 15


async def _bare_numpy() -> float:
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "import numpy")
    await proc.wait()
    return time.perf_counter() - started


async def _one(sandbox: LayeredSandbox, plan: WorkerPlan) -> float:
    started = time.perf_counter()
    worker = await sandbox.start(plan)
    termination = await worker.wait()
    elapsed = time.perf_counter() - started
    await worker.close()
    if termination.exit_code != 0:
        raise RuntimeError(f"bench worker failed: {termination} {worker.log_tail()}")
    return elapsed


async def _median(make: Callable[[], Awaitable[float]]) -> float:
    times = [await make() for _ in range(ROUNDS)]
    return statistics.median(times[1:])  # the first one warms caches


async def run(root: Path) -> dict[str, float]:
    (root / "model").mkdir()
    (root / "job").mkdir()
    (root / "job" / "bench_numpy.py").write_text("import numpy\n")

    def plan(argv: list[str], fork: bool) -> WorkerPlan:
        return WorkerPlan(
            argv=argv,
            env={"PATH": "/usr/bin:/bin"},
            model_dir=root / "model",
            job_dir=root / "job",
            spec=LauncherSpec(),
            fork_runtime=fork,
        )

    numpy_module = plan([sys.executable, "-m", "bench_numpy"], True)
    numpy_exec = plan([sys.executable, "-c", "import numpy"], False)
    true = plan(["/bin/true"], False)
    out = {"bare python -c 'import numpy' (reference)": await _median(_bare_numpy)}
    for label, disable in (("full stack", frozenset()), ("no isolation", LAYER_NAMES)):
        sandbox = await create_sandbox(SandboxConfig(state_dir=root / label, disable=disable))
        try:
            await _one(sandbox, true)
            out[f"{label}: /bin/true"] = await _median(partial(_one, sandbox, true))
            out[f"{label}: exec python, import numpy"] = await _median(
                partial(_one, sandbox, numpy_exec)
            )
            if not disable:
                out[f"{label}: zygote fork, -m module importing numpy"] = await _median(
                    partial(_one, sandbox, numpy_module)
                )
        finally:
            await sandbox.close()
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results = asyncio.run(run(Path(tmp)))
    reference = next(iter(results.values()))
    for label, seconds in results.items():
        print(f"{label:58s} {seconds * 1000:8.1f} ms  {seconds / reference:5.2f}x")
    overhead = results["full stack: /bin/true"] - results["no isolation: /bin/true"]
    label = "sandbox overhead per worker (full stack - none, /bin/true)"
    print(f"{label:58s} {overhead * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
