"""Detecting, once, which isolation layers this machine and configuration allow."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from dataclasses import dataclass, field

from launcher.sandbox import cgroups, seccomp
from launcher.sandbox.cgroups import CgroupHost
from launcher.sandbox.cleanenv import helper_env
from launcher.sandbox.config import SandboxConfig

log = logging.getLogger("launcher.sandbox")

NAMESPACE_LAYERS = ("pidns", "netns", "mountns", "ipcns", "utsns")


@dataclass
class Layers:
    """Each layer's state: "on" or "off: <reason>"."""

    states: dict[str, str] = field(default_factory=dict)
    cgroup: CgroupHost | None = None

    def on(self, name: str) -> bool:
        return self.states.get(name) == "on"


async def _probe(config: SandboxConfig) -> dict[str, str]:
    staging = config.state_dir / "probe-root"
    staging.mkdir(parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "launcher.sandbox.probe",
        str(config.uid),
        str(staging),
        env=helper_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        reason = err.decode(errors="replace").strip().splitlines()[-1:] or ["probe failed"]
        return {"probe": f"off: {reason[0]}"}
    result: dict[str, str] = json.loads(out)
    return result


async def detect(config: SandboxConfig) -> Layers:
    """Every layer's state, logged."""
    layers = Layers()
    disabled = "off: disabled by configuration"
    if sys.platform != "linux":
        probed = {name: "off: not Linux" for name in (*NAMESPACE_LAYERS, "uid", "seccomp")}
        probed["pdeathsig"] = "off: not Linux"
    else:
        probed = await _probe(config)
    child_side = probed.get("pdeathsig") == "on"
    states = layers.states
    states["zygote"] = (
        disabled
        if "zygote" in config.disable
        else "on"
        if child_side
        else "off: cannot fork a helper here"
    )
    states["spare"] = (
        disabled
        if "spare" in config.disable
        else "on"
        if states["zygote"] == "on"
        else "off: needs the zygote"
    )
    for name in NAMESPACE_LAYERS:
        states[name] = disabled if "namespaces" in config.disable else probed.get(name, "off")
    if "uid" in config.disable:
        states["uid"] = disabled
    elif states["mountns"] != "on":
        # Host paths (an interpreter under /root, a job dir under a 0700 folder) are often
        # unreadable to the worker uid; only the mount namespace re-exposes them readable.
        states["uid"] = "off: needs the mount namespace"
    else:
        states["uid"] = probed.get("uid", "off")
    if "seccomp" in config.disable:
        states["seccomp"] = disabled
    elif not seccomp.supported():
        states["seccomp"] = "off: no filter for this architecture"
    else:
        states["seccomp"] = probed.get("seccomp", "off")
    states["rlimits"] = (
        disabled if "rlimits" in config.disable else "on" if child_side else "off: no helper"
    )
    if "cgroup" in config.disable:
        states["cgroup"] = disabled
    elif not child_side:
        states["cgroup"] = "off: no helper process to join it"
    else:
        host, why = cgroups.detect(config.cgroup_prefix)
        if host is None:
            states["cgroup"] = f"off: {why}"
        else:
            cgroups.remove_stale(host, config.cgroup_prefix)
            layers.cgroup = host
            states["cgroup"] = "on"
            log.info("sandbox cgroup host: %s", host.describe())
    for ctl in cgroups.REPORTED:
        # Each controller on its own line: a dropped one is never hidden behind "cgroup: on".
        host = layers.cgroup
        if host is not None:
            state = host.controllers.get(ctl, "off: not available")
        else:
            state = f"off: no cgroup ({states['cgroup'].removeprefix('off: ')})"
        if ctl == "pids" and state != "on":
            state += "; RLIMIT_NPROC is the fork guard" if states["uid"] == "on" else ""
        states[f"cgroup_{ctl}"] = state
    helper = any(state == "on" for state in states.values())
    no_helper = "off: plain fallback, no helper process applies it"
    states["no_new_privs"] = "on" if helper else no_helper
    # Dropped by every helper-started worker (bounding, ambient and all sets), uid drop or not.
    states["capabilities"] = "on" if helper else no_helper
    states["disk_budget"] = (
        "on"
        if states["mountns"] == "on"
        else "off: needs the mount namespace (RLIMIT_FSIZE bounds each file only)"
        if states["rlimits"] == "on"
        else "off: needs the mount namespace"
    )
    states["die_with_launcher"] = "on" if helper else no_helper
    states["memory_watchdog"] = (
        "off: the memory cgroup limits memory" if layers.cgroup is not None else "on"
    )
    for name, state in states.items():
        log.info("sandbox layer %s: %s", name, state)
    return layers
