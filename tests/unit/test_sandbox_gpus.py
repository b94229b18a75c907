"""GPU accounting: exclusive assignment, clear refusals (with a fake inventory)."""

from __future__ import annotations

import shutil

import pytest

from launcher.sandbox.gpus import Gpu, GpuInventory, GpuRequestError, GpusBusy, detect_nvidia


def _inventory() -> GpuInventory:
    return GpuInventory(
        [
            Gpu("0", "NVIDIA H100 80GB HBM3", 81559),
            Gpu("1", "NVIDIA H100 80GB HBM3", 81559),
            Gpu("2", "NVIDIA A10G", 23028),
        ]
    )


def test_gpus_are_assigned_exclusively_until_released() -> None:
    inventory = _inventory()
    first = inventory.allocate("H100", 1)
    second = inventory.allocate("h100", 1)
    assert sorted(first + second) == ["0", "1"]
    with pytest.raises(GpusBusy, match="0 free now"):
        inventory.allocate("H100", 1)
    inventory.release(first)
    assert inventory.allocate("NVIDIA H100", 1) == first


def test_asking_for_more_gpus_than_exist_is_refused_with_the_reason() -> None:
    with pytest.raises(GpuRequestError, match="asked for 3 GPU.*has 2.*A10G"):
        _inventory().allocate("H100", 3)
    with pytest.raises(GpuRequestError, match="has 0"):
        _inventory().allocate("B200", 1)
    with pytest.raises(GpuRequestError, match="at least 1"):
        _inventory().allocate("H100", 0)


def test_releasing_gpus_not_held_is_refused() -> None:
    with pytest.raises(ValueError, match="not allocated"):
        _inventory().release(["0"])


def test_machine_without_nvidia_smi_has_no_gpus() -> None:
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has nvidia-smi")
    assert detect_nvidia() == []
    with pytest.raises(GpuRequestError):
        GpuInventory().allocate("H100", 1)
