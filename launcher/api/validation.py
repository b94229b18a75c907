"""Request validation as data: each field's rule in one table, each reason from one place."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psutil

from launcher import rules
from launcher.errors import invalid
from launcher.jobs.resolve import MountRef
from launcher.sandbox.gpus import GpuInventory, GpuRequestError
from launcher.spec import GpuRequest, LauncherSpec
from launcher.v1 import common_pb2

MAX_NAME = rules.MAX_NAME_CHARS
MAX_PARAMS = rules.MAX_PARAMS
MAX_MOUNTS = rules.MAX_MOUNTS
_IDS = {
    "a model id": rules.MODEL_ID,
    "a state id": rules.STATE_ID,
    "a snapshot id": rules.SNAPSHOT_ID,
    "a dataset id": rules.DATASET_ID,
    "a launcher id": rules.LAUNCHER_ID,
    "a persistent launcher id": rules.LAUNCHER_ID,
}


@dataclass(frozen=True)
class NumberRule:
    field: str  # the seed's name
    minimum: float
    maximum: float
    unit: str

    def check(self, path: str, value: float) -> None:
        if not math.isfinite(value) or not self.minimum <= value <= self.maximum:
            raise invalid(
                f"{path}.{self.field}",
                f"must be between {self.minimum:g} and {self.maximum:g} {self.unit}; got {value!r}",
            )


def _machine_mib() -> int:
    return int(psutil.virtual_memory().total // (1 << 20))


def spec_rules() -> dict[str, NumberRule]:
    cpus = float(os.cpu_count() or 1)
    mib = _machine_mib()
    return {
        "cpus": NumberRule("cpus", 0.1, cpus, "CPUs (this machine's count is the maximum)"),
        "memory_mebibytes": NumberRule("memoryMebibytes", 32, mib, "MiB (this machine's memory)"),
        "disk_mebibytes": NumberRule("diskMebibytes", 1, 1 << 24, "MiB"),
        "swap_mebibytes": NumberRule("swapMebibytes", 0, 1 << 24, "MiB"),
    }


def check_id(path: str, value: str, what: str) -> str:
    """``value`` checked by the id rule of ``what`` (``launcher.rules``)."""
    rule = _IDS.get(what) or rules.IdRule(what, rules.MODEL_ID.pattern, rules.MODEL_ID.description)
    return rule.check(path, value)


def check_name(path: str, value: str) -> str:
    """A free-text name (``launcher.rules.NAME``)."""
    return rules.NAME.check(path, value)


def spec_from_proto(
    path: str, spec: common_pb2.LauncherSpec, inventory: GpuInventory | None = None
) -> LauncherSpec:
    """A validated LauncherSpec from the wire; every bound is reported with its path.
    With ``inventory``, GPUs the machine does not have are refused too."""
    bounds = spec_rules()
    bounds["cpus"].check(path, spec.cpus)
    bounds["memory_mebibytes"].check(path, spec.memory_mebibytes)
    disk = swap = None
    if spec.HasField("disk_mebibytes"):
        bounds["disk_mebibytes"].check(path, spec.disk_mebibytes)
        disk = spec.disk_mebibytes
    if spec.HasField("swap_mebibytes"):
        bounds["swap_mebibytes"].check(path, spec.swap_mebibytes)
        swap = spec.swap_mebibytes
    request = None
    if spec.HasField("gpus"):
        rules.GPU_COUNT.check(f"{path}.gpus.count", spec.gpus.count)
        if spec.gpus.model:  # empty: any GPU model
            rules.GPU_MODEL.check(f"{path}.gpus.model", spec.gpus.model)
        if inventory is not None:
            try:
                inventory.check(spec.gpus.model, spec.gpus.count)
            except GpuRequestError as e:
                raise invalid(f"{path}.gpus", str(e)) from None
        request = GpuRequest(spec.gpus.model, spec.gpus.count)
    return LauncherSpec(
        cpus=spec.cpus,
        memory_mebibytes=spec.memory_mebibytes,
        disk_mebibytes=disk,
        swap_mebibytes=swap,
        gpus=request,
    )


def check_mounts(mounts: Sequence[Any], model_id: str | None = None) -> list[MountRef]:
    """``mountModels`` entries checked field by field (createState and uploadState alike):
    at most ``MAX_MOUNTS``, each model once, ``stateId`` or ``snapshotId`` but not both;
    with ``model_id``, a model may not mount itself."""
    if len(mounts) > rules.MAX_MOUNTS:
        raise invalid("mountModels", f"at most {rules.MAX_MOUNTS} models may be mounted")
    out: list[MountRef] = []
    for i, mount in enumerate(mounts):
        rules.MODEL_ID.check(f"mountModels[{i}].modelId", mount.model_id)
        if mount.model_id == model_id:
            raise invalid(f"mountModels[{i}].modelId", "a model cannot mount itself")
        if any(m.model_id == mount.model_id for m in out):
            raise invalid(
                f"mountModels[{i}].modelId",
                f"the model {mount.model_id!r} is mounted twice; mount each model once",
            )
        if mount.HasField("state_id") and mount.HasField("snapshot_id"):
            raise invalid(f"mountModels[{i}]", "give stateId or snapshotId, not both")
        state_id = snapshot_id = None
        if mount.HasField("state_id"):
            state_id = rules.STATE_ID.check(f"mountModels[{i}].stateId", mount.state_id)
        if mount.HasField("snapshot_id"):
            snapshot_id = rules.SNAPSHOT_ID.check(f"mountModels[{i}].snapshotId", mount.snapshot_id)
        out.append(MountRef(mount.model_id, state_id, snapshot_id))
    return out
