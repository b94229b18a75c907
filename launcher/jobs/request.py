"""A createState request after validation and resolution: everything a job needs to run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from launcher.outcomes import Failure
from launcher.params import ParamSource
from launcher.spec import LauncherSpec
from launcher.store.models import ModelConfig


@dataclass
class ResolvedMount:
    model_id: str
    path: str  # the other model's folder (read-only in the worker)
    state_id: str | None
    snapshot_id: str | None
    keys: dict[str, ParamSource]  # its state's keys, each one element of raw bytes

    def to_json(self) -> dict[str, str]:
        out = {"modelId": self.model_id}
        if self.snapshot_id is not None:
            out["snapshotId"] = self.snapshot_id
        return out


@dataclass
class JobRequest:
    model_id: str
    name: str
    model: ModelConfig | None  # None when loading it failed (see ``startup_failure``)
    startup_failure: Failure | None  # invalid_executable_file / read_executable_file_failed
    params: dict[str, ParamSource] = field(default_factory=dict)
    mounts: list[ResolvedMount] = field(default_factory=list)
    spec: LauncherSpec | None = None  # temporary launcher
    persistent_launcher_id: str | None = None
    #: How long resolving it took (model folder, mounts, datasets); counted in ``total``.
    resolve_ns: int = 0
    #: The caller's tenant (its state belongs to it; queues are fair between tenants);
    #: None on a launcher without keys (the default tenant, never capped).
    tenant: str | None = None
    #: The stored-bytes reservation of its spooled params (``launcher.auth.quotas``).
    quota: Any = None
    #: Leases to give back when the job ends (snapshots it mounts), each callable once.
    releases: list[Callable[[], object]] = field(default_factory=list)

    def close(self) -> None:
        """Release every open param and mount file, then the bytes they held in the quota."""
        for source in self.params.values():
            source.close()
        for mount in self.mounts:
            for source in mount.keys.values():
                source.close()
        if self.quota is not None:
            self.quota.release()
        for release in self.releases:
            release()
