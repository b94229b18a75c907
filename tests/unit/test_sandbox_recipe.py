"""What the sandbox asks the child side to apply, for a given set of layers (no process is
started): the disk budget, the per-file fallback, the fork guard without a pids controller."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.sandbox import SandboxConfig, WorkerPlan
from launcher.sandbox.detect import Layers
from launcher.sandbox.layered import LayeredSandbox, disk_inodes
from launcher.spec import LauncherSpec

_ALL_ON = [
    *("pidns", "netns", "mountns", "ipcns", "utsns", "uid", "seccomp", "rlimits", "cgroup"),
    *("cgroup_memory", "cgroup_cpu", "cgroup_pids", "capabilities", "disk_budget"),
]


def _sandbox(tmp_path: Path, off: dict[str, str]) -> LayeredSandbox:
    states = {name: "on" for name in _ALL_ON} | {"zygote": "off: not needed here"} | off
    config = SandboxConfig(state_dir=tmp_path / "state", hide=(tmp_path / "data",))
    return LayeredSandbox(config, Layers(states=states))


def _plan(tmp_path: Path, disk: int | None) -> WorkerPlan:
    for name in ("model", "job"):
        (tmp_path / name).mkdir(exist_ok=True)
    return WorkerPlan(
        argv=["/bin/true"],
        env={},
        model_dir=tmp_path / "model",
        job_dir=tmp_path / "job",
        spec=LauncherSpec(disk_mebibytes=disk),
    )


def test_the_disk_budget_is_one_tmpfs_of_disk_mebibytes(tmp_path: Path) -> None:
    recipe = _sandbox(tmp_path, {}).recipe(_plan(tmp_path, 64), None, False)
    assert recipe.layout is not None
    assert recipe.layout.tmp_mebibytes == 64
    assert recipe.layout.disk_inodes == disk_inodes(64) == 4096
    assert recipe.layout.writable == [str(tmp_path / "job")]
    assert "RLIMIT_FSIZE" not in recipe.rlimits  # a full budget reads ENOSPC, not EFBIG


def test_the_default_budget_applies_without_disk_mebibytes(tmp_path: Path) -> None:
    recipe = _sandbox(tmp_path, {}).recipe(_plan(tmp_path, None), None, False)
    assert recipe.layout is not None and recipe.layout.tmp_mebibytes == 1024


def test_without_the_mount_namespace_each_file_is_bounded(tmp_path: Path) -> None:
    off = {"mountns": "off: disabled by configuration", "uid": "off: needs the mount namespace"}
    recipe = _sandbox(tmp_path, off).recipe(_plan(tmp_path, 64), None, False)
    assert recipe.layout is None
    assert recipe.rlimits["RLIMIT_FSIZE"] == 64 * 1024 * 1024
    assert recipe.uid is None  # still no capabilities: confine.py drops them for every worker


def test_no_pids_controller_means_rlimit_nproc(tmp_path: Path) -> None:
    recipe = _sandbox(tmp_path, {"cgroup": "off: no cgroup"}).recipe(
        _plan(tmp_path, None), None, False
    )
    assert recipe.rlimits["RLIMIT_NPROC"] == 1024


def test_a_model_folder_in_a_hidden_path_is_refused_in_the_recipe(tmp_path: Path) -> None:
    (tmp_path / "data" / "models" / "x").mkdir(parents=True)
    plan = _plan(tmp_path, None)
    plan = WorkerPlan(
        plan.argv, plan.env, tmp_path / "data" / "models" / "x", plan.job_dir, plan.spec
    )
    with pytest.raises(ValueError, match="inside a hidden path"):
        _sandbox(tmp_path, {}).recipe(plan, None, False)
