"""A LauncherSpec as Ray resources, and whether any node of the cluster could ever hold it.

``num_cpus = cpus``, ``memory = memoryMebibytes * 2^20`` (admission only: the node's sandbox
cgroup enforces it and proves ``oom``), ``num_gpus = gpus.count`` and ``accelerator_type``
from ``gpus.model`` normalised as Ray names accelerators ("NVIDIA H100 80GB HBM3" -> "H100").
Ray leaves an infeasible request pending forever, so the hub refuses it first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from launcher.executors.base import SpecRefused
from launcher.spec import LauncherSpec

_ACCELERATOR = "accelerator_type:"
_VENDOR = re.compile(r"^(nvidia|amd|intel)\s+", re.IGNORECASE)
_GEFORCE = re.compile(r"^(geforce|tesla|quadro)\s+", re.IGNORECASE)


def accelerator_type(model: str) -> str:
    """Ray's accelerator name for a GPU model as users and nvidia-smi write it."""
    words = _GEFORCE.sub("", _VENDOR.sub("", model.strip())).split()
    return words[0].split("-")[0].upper() if words else ""


def ray_options(spec: LauncherSpec) -> dict[str, Any]:
    """The ``.options(...)`` of the task or actor that holds ``spec`` on a node."""
    options: dict[str, Any] = {
        "num_cpus": spec.cpus,
        "memory": spec.memory_mebibytes * 2**20,
        "num_gpus": 0,
    }
    if spec.gpus is not None:
        options["num_gpus"] = spec.gpus.count
        options["accelerator_type"] = accelerator_type(spec.gpus.model)
    return options


def _fits(spec: LauncherSpec, resources: Mapping[str, float]) -> bool:
    options = ray_options(spec)
    if resources.get("CPU", 0.0) < options["num_cpus"]:
        return False
    if resources.get("memory", 0.0) < options["memory"]:
        return False
    if options["num_gpus"] and resources.get("GPU", 0.0) < options["num_gpus"]:
        return False
    accel = options.get("accelerator_type")
    return accel is None or resources.get(_ACCELERATOR + accel, 0.0) > 0


def check_feasible(spec: LauncherSpec, nodes: Iterable[Mapping[str, Any]]) -> None:
    """``SpecRefused`` unless some alive node's total resources could hold ``spec``."""
    alive: list[Mapping[str, float]] = [n.get("Resources", {}) for n in nodes if n.get("Alive")]
    if any(_fits(spec, resources) for resources in alive):
        return
    largest: Mapping[str, float] = max(
        alive, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={}
    )
    accels = sorted(
        {k[len(_ACCELERATOR) :] for r in alive for k in r if k.startswith(_ACCELERATOR)}
    )
    field = _short_of(spec, alive)
    raise SpecRefused(
        field,
        f"no node of the cluster can ever hold this spec (largest node: "
        f"{largest.get('CPU', 0):g} CPUs, {int(largest.get('memory', 0)) >> 20} MiB, "
        f"{largest.get('GPU', 0):g} GPUs; GPU models: {', '.join(accels) or 'none'})",
    )


def _short_of(spec: LauncherSpec, alive: list[Mapping[str, Any]]) -> str:
    """The first spec field that leaves no node: CPUs, then memory among those, then GPUs."""
    options = ray_options(spec)
    nodes = [r for r in alive if r.get("CPU", 0.0) >= options["num_cpus"]]
    if not nodes:
        return "cpus"
    if not any(r.get("memory", 0.0) >= options["memory"] for r in nodes):
        return "memoryMebibytes"
    return "gpus" if spec.gpus is not None else "cpus"
