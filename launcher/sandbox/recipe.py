"""A Recipe: one worker's plan joined with the layers to apply, as JSON for the child side.

The host decides everything (which layers, which paths, which limits); the child side only
executes the recipe, so the same code serves the zygote's forks and the exec'd entry helper.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from launcher.sandbox.mounts import FsLayout

# Exit code of a worker whose sandbox could not be set up (the log says why).
SETUP_FAILED = 125


@dataclass
class Recipe:
    argv: list[str]
    env: dict[str, str]
    cwd: str
    run_module: str | None = None  # run this module in the forked interpreter (zygote only)
    namespaces: int = 0  # CLONE_NEW* flags
    layout: FsLayout | None = None  # with the mount namespace
    cgroup_procs: list[str] = field(default_factory=list)
    uid: int | None = None
    gid: int | None = None
    seccomp: bool = False
    rlimits: dict[str, int] = field(default_factory=dict)  # RLIMIT_* name → soft = hard
    hostname: str = "sandbox"
    blas_threads: int = 1  # the forked zygote's OpenBLAS started single-threaded: reset it

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Recipe:  # type: ignore[type-arg]
        layout = data.get("layout")
        return cls(**{**data, "layout": FsLayout(**layout) if layout else None})
