"""Spec -> Ray resources, feasibility against a node table, and model bundles (no cluster)."""

from __future__ import annotations

import hashlib
import os

import pytest

from launcher.executors.base import SpecRefused
from launcher.executors.ray import bundle
from launcher.executors.ray.resources import accelerator_type, check_feasible, ray_options
from launcher.spec import GpuRequest, LauncherSpec


@pytest.mark.parametrize(
    ("name", "ray_name"),
    [
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("H100", "H100"),
        ("nvidia a100-sxm4-40gb", "A100"),
        ("Tesla V100-SXM2-16GB", "V100"),
        ("NVIDIA L4", "L4"),
    ],
)
def test_gpu_models_are_normalised_as_ray_names_accelerators(name: str, ray_name: str) -> None:
    assert accelerator_type(name) == ray_name


def test_spec_becomes_ray_options() -> None:
    spec = LauncherSpec(cpus=1.5, memory_mebibytes=512, gpus=GpuRequest("NVIDIA H100", 2))
    assert ray_options(spec) == {
        "num_cpus": 1.5,
        "memory": 512 << 20,
        "num_gpus": 2,
        "accelerator_type": "H100",
    }
    assert ray_options(LauncherSpec(cpus=1, memory_mebibytes=64))["num_gpus"] == 0


NODES = [
    {"Alive": True, "Resources": {"memory": 64 << 30}},  # a head without CPUs
    {
        "Alive": True,
        "Resources": {"CPU": 8, "memory": 32 << 30, "GPU": 2, "accelerator_type:H100": 1},
    },
    {
        "Alive": True,
        "Resources": {"CPU": 2, "memory": 8 << 30, "GPU": 1, "accelerator_type:A100": 1},
    },
    {
        "Alive": False,
        "Resources": {"CPU": 64, "memory": 512 << 30, "GPU": 8, "accelerator_type:B200": 1},
    },
]


@pytest.mark.parametrize(
    "spec",
    [
        LauncherSpec(cpus=8, memory_mebibytes=1024),
        LauncherSpec(cpus=1, memory_mebibytes=1024, gpus=GpuRequest("H100", 2)),
        LauncherSpec(cpus=2, memory_mebibytes=8 << 10, gpus=GpuRequest("A100", 1)),
    ],
)
def test_specs_some_alive_node_holds_are_accepted(spec: LauncherSpec) -> None:
    check_feasible(spec, NODES)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (LauncherSpec(cpus=16, memory_mebibytes=1024), "cpus"),
        (LauncherSpec(cpus=2, memory_mebibytes=40 << 10), "memoryMebibytes"),
        (LauncherSpec(cpus=1, memory_mebibytes=1024, gpus=GpuRequest("H100", 3)), "gpus"),
        (LauncherSpec(cpus=1, memory_mebibytes=1024, gpus=GpuRequest("B200", 1)), "gpus"),
        (LauncherSpec(cpus=4, memory_mebibytes=1024, gpus=GpuRequest("A100", 1)), "gpus"),
    ],
)
def test_specs_no_alive_node_holds_are_refused_naming_the_field(spec, field) -> None:
    with pytest.raises(SpecRefused) as refused:
        check_feasible(spec, NODES)
    assert refused.value.field == field
    assert "largest node" in refused.value.reason


def test_no_node_at_all_refuses_everything() -> None:
    with pytest.raises(SpecRefused):
        check_feasible(LauncherSpec(cpus=1, memory_mebibytes=64), [])


def test_bundles_are_content_addressed_regular_files_only(tmp_path) -> None:
    model = tmp_path / "model"
    (model / "pkg").mkdir(parents=True)
    (model / "main.py").write_text("model = {}\n")
    (model / "pkg" / "data.bin").write_bytes(b"\x00" * 1000)
    (tmp_path / "secret").write_text("hub only")
    os.symlink(tmp_path / "secret", model / "leak")
    digest, raw = bundle.make_bundle(model)
    assert digest == hashlib.sha256(raw).hexdigest()
    os.utime(model / "main.py", (0, 0))  # metadata does not change the digest
    assert bundle.make_bundle(model)[0] == digest
    cache = tmp_path / "cache"
    assert bundle.cached(cache, digest) is None
    out = bundle.unpack(cache, digest, raw)
    assert bundle.cached(cache, digest) == out
    assert (out / "main.py").read_text() == "model = {}\n"
    assert (out / "pkg" / "data.bin").read_bytes() == b"\x00" * 1000
    assert not (out / "leak").exists()  # the symlink did not travel
    assert not os.access(out / "main.py", os.W_OK) or os.geteuid() == 0
    assert (out / "main.py").stat().st_mode & 0o222 == 0
    assert bundle.unpack(cache, digest, raw) == out  # cached: unpacked once


def test_a_bundle_that_does_not_match_its_digest_is_refused(tmp_path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "main.py").write_text("x = 1\n")
    digest, raw = bundle.make_bundle(model)
    with pytest.raises(bundle.BundleError):
        bundle.unpack(tmp_path / "cache", digest, raw + b"tampered")
    assert not (tmp_path / "cache" / digest).exists()
