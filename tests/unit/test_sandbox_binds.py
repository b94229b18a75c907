"""The sandbox's own checks on what it binds: model and mount folders (the second line behind
the store), GPU device nodes of the allocated GPUs only, and a clean environment on the exec'd
entry path."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from launcher.sandbox import WorkerPlan
from launcher.sandbox.layered import GPU_CONTROL_NODES, LayeredSandbox, gpu_devices
from launcher.sandbox.mounts import BindRefused, _bind_verified
from tests.support.hostile.harness import Place, config_for, in_sandbox, plan_for, run_to_end

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the full stack needs root")
ATTACKER = Path(__file__).parent.parent / "models" / "e2e" / "attacker" / "main.py"


@pytest.fixture
def place(tmp_path: Path) -> Place:
    return Place(tmp_path).make()


def _refusal(place: Place, plan: WorkerPlan, ok: WorkerPlan | None = None, **extra: object) -> str:
    async def body(sandbox: LayeredSandbox) -> str:
        with pytest.raises(ValueError) as info:
            await sandbox.start(plan)
        # Refused before anything started: the next worker runs as usual.
        termination, log = await run_to_end(sandbox, ok or plan_for(place, "exit_with.py", "0"))
        assert termination.exit_code == 0, log
        return str(info.value)

    return in_sandbox(config_for(place, **extra), body)


def test_a_model_folder_symlinked_into_the_data_root_is_not_bound(place: Place) -> None:
    link = place.root / "evil"
    os.symlink(place.data, link)
    plan = replace(plan_for(place, "exit_with.py", "0"), model_dir=link)
    assert "inside a hidden path" in _refusal(place, plan)


def test_a_mount_symlinked_into_the_data_root_is_not_bound(place: Place) -> None:
    link = place.root / "evil-mount"
    os.symlink(place.data / "states", link)
    plan = replace(plan_for(place, "exit_with.py", "0"), mounts=[link])
    assert "inside a hidden path" in _refusal(place, plan)


def test_a_folder_outside_the_models_folder_is_not_bound(place: Place) -> None:
    models = place.root / "models"
    (models / "good").mkdir(parents=True)
    os.symlink(place.model, models / "escape")  # resolves outside models/
    plan = replace(plan_for(place, "exit_with.py", "0"), model_dir=models / "escape")
    ok = replace(plan, model_dir=models / "good")
    refusal = _refusal(place, plan, ok, bindable_dirs=(models,))
    assert "not inside the models or snapshots folder" in refusal


def test_a_folder_swapped_after_the_check_is_refused_by_the_child(tmp_path: Path) -> None:
    good, other = tmp_path / "good", tmp_path / "other"
    good.mkdir()
    other.mkdir()
    os.symlink(other, tmp_path / "swapped")
    # The host verified "swapped" as good's real path; at bind time it resolves elsewhere.
    with pytest.raises(BindRefused, match="Too many levels|resolves elsewhere|Not a directory"):
        _bind_verified(str(tmp_path / "swapped"), str(tmp_path / "target"))


def _fake_gpu_nodes(dev: Path) -> None:
    dev.mkdir()
    null = os.stat("/dev/null").st_rdev
    for name in ("nvidia0", "nvidia1", "nvidia2", *GPU_CONTROL_NODES):
        os.mknod(dev / name, 0o666 | 0o020000, null)  # character devices (really /dev/null)
        os.chmod(dev / name, 0o666)


def test_a_worker_sees_only_its_own_gpus_and_the_control_nodes(place: Place) -> None:
    dev = place.root / "fakedev"
    _fake_gpu_nodes(dev)
    assert [Path(p).name for p in gpu_devices(["1"], dev)] == ["nvidia1", *GPU_CONTROL_NODES]
    plan = replace(plan_for(place, "device_probe.py", "nvidia0", "nvidia2"), gpu_ids=["1"])
    termination, log = in_sandbox(config_for(place, dev_dir=dev), lambda s: run_to_end(s, plan))
    report = json.loads(log.strip().splitlines()[-1])
    assert termination.exit_code == 0, log
    assert report["nodes"] == sorted(["nvidia1", *GPU_CONTROL_NODES])
    assert report["open"]["nvidia1"] == "ok"
    assert report["open"]["nvidia0"] == report["open"]["nvidia2"] == "No such file or directory"
    assert report["cuda"] == "1"


def test_a_worker_without_gpus_sees_no_gpu_node(place: Place) -> None:
    dev = place.root / "fakedev"
    _fake_gpu_nodes(dev)
    plan = plan_for(place, "device_probe.py")
    _, log = in_sandbox(config_for(place, dev_dir=dev), lambda s: run_to_end(s, plan))
    report = json.loads(log.strip().splitlines()[-1])
    assert report["nodes"] == [] and report["cuda"] is None


@pytest.mark.parametrize("disable", [frozenset(), frozenset({"zygote"})], ids=["zygote", "entry"])
def test_no_copy_of_the_launcher_environment_in_worker_memory(
    place: Place, disable: frozenset[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    head, tail = "launcher-secret-", "0123456789abcdef"
    monkeypatch.setenv("LAUNCHER_UNIT_SECRET", head + tail)
    shutil.copy(ATTACKER, place.model / "attacker.py")
    code = (
        "import json, runpy, sys\n"
        f"m = runpy.run_path({str(place.model / 'attacker.py')!r})\n"
        "print(json.dumps(m['env_memory'](sys.argv[1])))\n"
    )
    plan = replace(
        plan_for(place, "exit_with.py", fork_runtime=False),
        argv=[sys.executable, "-c", code, f"{head}|{tail}"],
    )
    termination, log = in_sandbox(config_for(place, disable), lambda s: run_to_end(s, plan))
    report = json.loads(log.strip().splitlines()[-1])
    assert termination.exit_code == 0, log
    assert report["found"] == [] and report["scanned_bytes"] > 1 << 20, report


def test_the_io_uring_attack_is_real_outside_the_sandbox() -> None:
    """The control for tests/e2e/test_sandbox_attacks.py: unconfined, the same code gets an
    AF_INET socket through IORING_OP_SOCKET (where the kernel allows io_uring at all)."""
    if Path("/proc/sys/kernel/io_uring_disabled").read_text().strip() != "0":
        pytest.skip("io_uring is disabled on this machine")
    spec = importlib.util.spec_from_file_location("attacker", ATTACKER)
    assert spec is not None and spec.loader is not None
    attacker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(attacker)
    assert attacker.io_uring_socket(2).startswith("fd ")
