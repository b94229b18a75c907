"""GPU inventory: which GPUs exist, and exclusive assignment of them to jobs.

GPUs are found with ``nvidia-smi`` when present, or given as a fake inventory (tests).
Asking for more GPUs of a model than exist is a ``GpuRequestError`` (the caller answers
``invalid_parameter``); asking for more than are free right now is ``GpusBusy``.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Gpu:
    id: str  # the index CUDA_VISIBLE_DEVICES takes
    model: str
    memory_mebibytes: int


class GpuRequestError(ValueError):
    """A request that can never be met on this machine."""


class GpusBusy(RuntimeError):
    """Enough GPUs exist, but not enough are free now."""


def _parse_memory(text: str) -> int:
    number = text.strip().split()[0]
    return int(float(number)) if number.replace(".", "", 1).isdigit() else 0


def detect_nvidia(timeout: float = 10.0) -> list[Gpu]:
    """The machine's NVIDIA GPUs (none without ``nvidia-smi`` or when it fails)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) == 3:
            gpus.append(Gpu(parts[0], parts[1], _parse_memory(parts[2])))
    return gpus


def _which(model: str) -> str:
    return f"model {model!r}" if model.strip() else "any model"


def _matches(gpu: Gpu, model: str) -> bool:
    """A model name matches by case-insensitive containment ("H100" matches "NVIDIA H100 ...")."""
    return model.strip().lower() in gpu.model.lower()


class GpuInventory:
    """Exclusive assignment of GPUs to jobs."""

    def __init__(self, gpus: list[Gpu] | None = None) -> None:
        self.gpus = detect_nvidia() if gpus is None else list(gpus)
        self._taken: set[str] = set()

    def check(self, model: str, count: int) -> list[Gpu]:
        """The GPUs of ``model``; ``GpuRequestError`` if fewer than ``count`` exist at all."""
        if count < 1:
            raise GpuRequestError(f"gpus.count must be at least 1, not {count}")
        matching = [gpu for gpu in self.gpus if _matches(gpu, model)]
        if count > len(matching):
            have = ", ".join(sorted({gpu.model for gpu in self.gpus})) or "none"
            raise GpuRequestError(
                f"asked for {count} GPU(s) of {_which(model)}; this machine has "
                f"{len(matching)} (GPUs here: {have})"
            )
        return matching

    def allocate(self, model: str, count: int) -> list[str]:
        """``count`` free GPUs of ``model``, now assigned to the caller until ``release``."""
        matching = self.check(model, count)
        free = [gpu.id for gpu in matching if gpu.id not in self._taken]
        if count > len(free):
            raise GpusBusy(f"{count} GPU(s) of {_which(model)} asked, {len(free)} free now")
        chosen = free[:count]
        self._taken.update(chosen)
        return chosen

    def in_use(self) -> int:
        """How many GPUs are assigned now (for ``launcher_gpus_in_use``)."""
        return len(self._taken)

    def release(self, ids: list[str]) -> None:
        unknown = set(ids) - self._taken
        if unknown:
            raise ValueError(f"GPU(s) {sorted(unknown)} were not allocated")
        self._taken.difference_update(ids)


def parse_fake_inventory(text: str) -> list[Gpu]:
    """``"0:H100,1:H100"`` (index:model[:MiB], comma separated): a stand-in inventory for
    testing GPU accounting on a machine without GPUs."""
    gpus = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        fields = item.split(":")
        if len(fields) not in (2, 3) or not fields[0] or not fields[1]:
            raise ValueError(f"bad fake GPU {item!r}: expected INDEX:MODEL[:MiB]")
        memory = int(fields[2]) if len(fields) == 3 else 0
        gpus.append(Gpu(fields[0], fields[1], memory))
    return gpus
