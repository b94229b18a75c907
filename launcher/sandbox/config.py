"""SandboxConfig: which isolation layers to use and with what settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Layers that configuration can turn off (each also turns itself off when unavailable).
LAYER_NAMES = frozenset({"namespaces", "uid", "cgroup", "seccomp", "zygote", "spare", "rlimits"})


@dataclass(frozen=True)
class SandboxConfig:
    """How workers are isolated.

    ``state_dir`` is a directory the sandbox owns (the staging point of workers' root file
    systems). ``hide`` lists host paths that must never be visible to a worker (the
    launcher's data root) even when they lie inside something exposed.
    """

    state_dir: Path
    disable: frozenset[str] = frozenset()
    uid: int = 65534
    gid: int = 65534
    hide: tuple[Path, ...] = ()
    expose: tuple[Path, ...] = ()  # extra host paths the worker may read
    packages: tuple[str, ...] = ("runtime",)  # project packages the worker imports
    pids_max: int = 1024
    open_files: int = 4096
    #: The disk budget of a worker whose spec has no diskMebibytes: job folder, $HOME, /tmp
    #: and /dev/shm together (one tmpfs, charged to the worker's memory cgroup).
    default_disk_mebibytes: int = 1024
    #: Model and mount folders must resolve inside one of these folders to be bound (the
    #: models folder, and the snapshots' read-only code copies); empty: anywhere outside the
    #: hidden paths. The store checks first; this is the second line.
    bindable_dirs: tuple[Path, ...] = ()
    #: Where GPU device nodes are looked up (tests point it at fake nodes).
    dev_dir: Path = Path("/dev")
    cgroup_prefix: str = "launcher-worker"

    def __post_init__(self) -> None:
        unknown = set(self.disable) - LAYER_NAMES
        if unknown:
            raise ValueError(
                f"unknown sandbox layer(s) {sorted(unknown)}; known: {sorted(LAYER_NAMES)}"
            )
        if self.uid <= 0 or self.gid <= 0:
            raise ValueError("the worker uid and gid must be unprivileged (> 0)")
        if self.pids_max < 8 or self.open_files < 64:
            raise ValueError("pids_max must be >= 8 and open_files >= 64")
