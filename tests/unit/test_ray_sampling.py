"""The sampler a persistent launcher's Ray actor runs on its node (launcher/executors/ray/
sampling.py): its cgroups summed, the machine's figures without them, a bounded window."""

from __future__ import annotations

import time
from pathlib import Path

import psutil

from launcher.executors.ray.sampling import NodeSampler, _groups_usage, to_samples
from launcher.sandbox.cgroups import CgroupHost


def _v2_group(parent: Path, name: str, memory: int, usec: int, shmem: int) -> None:
    folder = parent / name
    folder.mkdir()
    (folder / "memory.current").write_text(f"{memory}\n")
    (folder / "cpu.stat").write_text(f"usage_usec {usec}\nuser_usec 1\n")
    (folder / "memory.stat").write_text(f"anon 5\nshmem {shmem}\n")


def test_the_launchers_cgroups_of_every_run_job_are_summed_and_no_other(tmp_path: Path) -> None:
    host = CgroupHost(2, {"unified": tmp_path}, True)
    _v2_group(tmp_path, "launcher-worker-101-group-L1", 100, 7, 3)
    _v2_group(tmp_path, "launcher-worker-102-group-L1", 50, 5, 1)
    _v2_group(tmp_path, "launcher-worker-103-group-L2", 999, 999, 999)  # another launcher
    usage = _groups_usage(host, "launcher-worker", "L1")
    assert usage is not None
    assert (usage.cpu_ns, usage.memory, usage.disk) == (12_000, 150, 4)
    assert _groups_usage(host, "launcher-worker", "L3") is None  # no worker alive there


def test_v1_groups_are_summed_across_their_controllers(tmp_path: Path) -> None:
    memory, cpu = tmp_path / "memory", tmp_path / "cpuacct"
    for pid, used in ((7, 10), (8, 20)):
        name = f"launcher-worker-{pid}-group-L"
        (memory / name).mkdir(parents=True)
        (memory / name / "memory.usage_in_bytes").write_text(str(used))
        (memory / name / "memory.stat").write_text("total_shmem 2\n")
        (cpu / name).mkdir(parents=True)
        (cpu / name / "cpuacct.usage").write_text(str(used * 1000))
    host = CgroupHost(1, {"memory": memory, "cpuacct": cpu}, False)
    usage = _groups_usage(host, "launcher-worker", "L")
    assert usage is not None
    assert (usage.cpu_ns, usage.memory, usage.disk) == (30_000, 30, 4)


def test_without_cgroups_the_nodes_machine_figures_from_creation_in_a_window(
    tmp_path: Path,
) -> None:
    before = time.time()
    sampler = NodeSampler("L", 0.05, 4, tmp_path / "not-made-yet", cgroup=False)
    try:
        assert sampler.source == "machine"
        first = sampler.since(None)[0]
        assert before <= first[0] <= time.time()  # from its creation
        deadline = time.monotonic() + 10
        while len(sampler.since(None)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        rows = sampler.since(None)
        assert len(rows) == 4  # the bounded window
        samples = to_samples(rows)
        assert all(0 < s.memory <= psutil.virtual_memory().total for s in samples)
        assert all(s.disk > 0 for s in samples)  # the folder's filesystem (its parent now)
        assert all(0 <= s.cpus <= (psutil.cpu_count() or 1) + 1 for s in samples)
        later = sampler.since(samples[-1].timestamp)
        assert later and all(row[0] >= samples[-1].timestamp for row in later)
    finally:
        sampler.stop()
