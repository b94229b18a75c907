"""A local multi-node Ray cluster for the Ray executor's tests, always inside a network
namespace of its own that has only loopback (Ray rewrites 127.0.0.1 to the machine's
routable address; in such a namespace there is none, so nothing leaves loopback)."""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Set in the re-executed pytest that runs inside the namespace.
NETNS_ENV = "LAUNCHER_TEST_RAY_NETNS"
#: Fast health checks: a frozen node is marked dead in ~1.5 s instead of ~65 s.
SYSTEM_CONFIG = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 300,
    "health_check_timeout_ms": 300,
    "health_check_failure_threshold": 4,
    "memory_monitor_refresh_ms": 0,  # the node's sandbox cgroups enforce memory
}
#: The two worker nodes: each with fake GPUs of its own model and a custom resource.
NODES = {
    "h100": {"num_cpus": 2, "num_gpus": 2, "resources": {"accelerator_type:H100": 1, "h100": 1}},
    "a100": {"num_cpus": 1, "num_gpus": 1, "resources": {"accelerator_type:A100": 1, "a100": 1}},
}
NODE_MEMORY = 4 << 30


def interfaces() -> list[str]:
    return [name for _, name in socket.if_nameindex()]


def in_loopback_netns() -> bool:
    return interfaces() == ["lo"]


def netns_pytest(
    module: Path, timeout: float, extra: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run pytest for ``module`` in a fresh network namespace with only ``lo`` up."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        raise RuntimeError("the Ray tests need root, unshare and ip to make a network namespace")
    inner = [
        sys.executable,
        "-m",
        "pytest",
        str(module),
        "-q",
        "-p",
        "no:cacheprovider",
        *(extra or []),
    ]
    return subprocess.run(
        ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *inner],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, NETNS_ENV: "1"},
        cwd=Path(__file__).parent.parent.parent,
    )


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


@contextmanager
def local_cluster(home: Path) -> Iterator[tuple[object, dict[str, str]]]:
    """A head (no CPUs: nothing runs there) and the two ``NODES``; yields (cluster, node ids)."""
    if not in_loopback_netns():
        raise RuntimeError(f"refusing to start Ray outside a loopback-only netns: {interfaces()}")
    home.mkdir(parents=True, exist_ok=True)
    os.environ["HOME"] = str(home)
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "_system_config": SYSTEM_CONFIG},
    )
    ids = {}
    try:
        for name, args in NODES.items():
            node = cluster.add_node(memory=NODE_MEMORY, **args)
            ids[name] = node.node_id
        cluster.wait_for_nodes()
        yield cluster, ids
    finally:
        cluster.shutdown()
