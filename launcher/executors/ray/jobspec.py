"""What the hub tells a node about one worker (JSON on ``launcher run-job``'s stdin)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from launcher.spec import GpuRequest, LauncherSpec


def spec_from_json(data: dict[str, Any]) -> LauncherSpec:
    gpus = data.get("gpus")
    return LauncherSpec(
        cpus=float(data["cpus"]),
        memory_mebibytes=int(data["memoryMebibytes"]),
        disk_mebibytes=data.get("diskMebibytes"),
        swap_mebibytes=data.get("swapMebibytes"),
        gpus=GpuRequest(str(gpus["model"]), int(gpus["count"])) if gpus else None,
    )


@dataclass(frozen=True)
class NodeJob:
    relay: str  # host:port of the hub's relay listener
    token: str
    node_dir: str  # this node's cache and run folder
    runtime: str
    fresh_process: bool
    spec: LauncherSpec
    connect_limit: float
    digest: str
    model_dir: str = ""  # set on the node, once the bundle is there
    node_id: str = ""
    gpu_ids: list[str] = field(default_factory=list)
    sandbox_disable: list[str] = field(default_factory=list)
    relay_ca: str | None = None  # PEM the relay's certificate is verified with (TLS), or None
    #: Mounted models' bundles: [{"path": hub path, "digest": ...}]; their folders on the node.
    mounts: list[dict[str, str]] = field(default_factory=list)
    mount_dirs: dict[str, str] = field(default_factory=dict)
    #: The persistent launcher whose budget the worker shares on its node, or None.
    group: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "relay": self.relay,
            "token": self.token,
            "nodeDir": self.node_dir,
            "runtime": self.runtime,
            "freshProcess": self.fresh_process,
            "spec": self.spec.to_json(),
            "connectLimit": self.connect_limit,
            "digest": self.digest,
            "modelDir": self.model_dir,
            "nodeId": self.node_id,
            "gpuIds": self.gpu_ids,
            "sandboxDisable": self.sandbox_disable,
            "relayCa": self.relay_ca,
            "mounts": self.mounts,
            "mountDirs": self.mount_dirs,
            "group": self.group,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> NodeJob:
        return cls(
            relay=str(d["relay"]),
            token=str(d["token"]),
            node_dir=str(d["nodeDir"]),
            runtime=str(d["runtime"]),
            fresh_process=bool(d["freshProcess"]),
            spec=spec_from_json(d["spec"]),
            connect_limit=float(d["connectLimit"]),
            digest=str(d["digest"]),
            model_dir=str(d.get("modelDir", "")),
            node_id=str(d.get("nodeId", "")),
            gpu_ids=[str(g) for g in d.get("gpuIds", [])],
            sandbox_disable=[str(s) for s in d.get("sandboxDisable", [])],
            relay_ca=d.get("relayCa"),
            mounts=[
                {"path": str(m["path"]), "digest": str(m["digest"])} for m in d.get("mounts", [])
            ],
            mount_dirs={str(k): str(v) for k, v in d.get("mountDirs", {}).items()},
            group=str(d["group"]) if d.get("group") is not None else None,
        )
