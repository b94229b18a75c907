"""LauncherSpec: the resources a launcher (and every worker it runs) may use."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuRequest:
    model: str
    count: int


@dataclass(frozen=True)
class LauncherSpec:
    """The seed's LauncherSpec, validated (see ``launcher.api.validation``)."""

    cpus: float = 1.0
    memory_mebibytes: int = 1024
    disk_mebibytes: int | None = None
    swap_mebibytes: int | None = None
    gpus: GpuRequest | None = None

    def to_json(self) -> dict[str, object]:
        """The seed's camelCase form."""
        out: dict[str, object] = {"cpus": self.cpus, "memoryMebibytes": self.memory_mebibytes}
        if self.disk_mebibytes is not None:
            out["diskMebibytes"] = self.disk_mebibytes
        if self.swap_mebibytes is not None:
            out["swapMebibytes"] = self.swap_mebibytes
        if self.gpus is not None:
            out["gpus"] = {"model": self.gpus.model, "count": self.gpus.count}
        return out
