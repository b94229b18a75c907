"""The plan of one worker process: our runtime, or the official one, unchanged."""

from __future__ import annotations

import sys
from pathlib import Path

from launcher.sandbox.types import WorkerPlan
from launcher.spec import LauncherSpec


def worker_plan(
    runtime: str,
    fresh_process: bool,
    model_dir: Path,
    work_dir: Path,
    spec: LauncherSpec,
    mounts: list[Path],
    gpu_ids: list[str] | None = None,
    group: str | None = None,
) -> WorkerPlan:
    """How to start a worker for a model of ``runtime`` in ``work_dir`` (its IPC socket there)."""
    ipc = str(work_dir / "ipc.sock")
    if runtime == "decthings-model":
        argv = [sys.executable, "-m", "decthings_model"]
        env = {"IPC_PATH": ipc}
    else:
        argv = [sys.executable, "-m", "runtime"]
        threads = str(max(1, int(spec.cpus)))
        env = {
            "IPC_PATH": ipc,
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(work_dir),
            "TMPDIR": "/tmp",
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "OPENBLAS_NUM_THREADS": threads,
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
        }
    return WorkerPlan(
        argv=argv,
        env=env,
        model_dir=model_dir,
        job_dir=work_dir,
        spec=spec,
        mounts=mounts,
        gpu_ids=list(gpu_ids or []),
        group=group,
        fork_runtime=runtime == "python" and not fresh_process,
    )
