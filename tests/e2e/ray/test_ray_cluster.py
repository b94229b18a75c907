"""Runs tests/e2e/ray/cluster_cases.py in a network namespace of its own with only loopback.

Ray rewrites 127.0.0.1 to the machine's routable address; inside a fresh namespace there is
none, so every node, the hub's relay and the workers talk over loopback only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.ray_cluster import netns_pytest

CASES = Path(__file__).with_name("cluster_cases.py")


@pytest.mark.timeout(900)
def test_ray_executor_on_a_local_multi_node_cluster() -> None:
    done = netns_pytest(CASES, timeout=600, extra=["-s", "-rA"])
    report = done.stdout[-20000:] + done.stderr[-5000:]
    assert done.returncode == 0, report
    assert " passed" in done.stdout and " skipped" not in done.stdout, report
    print(report)
