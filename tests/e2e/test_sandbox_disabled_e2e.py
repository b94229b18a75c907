"""The launcher with every sandbox layer disabled by configuration: jobs still run, outcomes
are still told apart (OOM proven by the memory watchdog), and get_sysinfo says what is off."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.client import LauncherClient
from tests.support.launcher_proc import running_launcher

ALL_LAYERS = "namespaces,uid,cgroup,seccomp,zygote,rlimits"
SPEC = {"cpus": 1, "memoryMebibytes": 256}
TEMPORARY = {"type": "temporaryLauncher", "spec": SPEC}


@pytest.fixture(scope="module")
def bare(tmp_path_factory) -> Iterator[LauncherClient]:
    root = Path(tmp_path_factory.mktemp("bare", numbered=True))
    with running_launcher(root, ["--sandbox-disable", ALL_LAYERS]) as proc:
        with LauncherClient(proc.address) as client:
            yield client


def error(client: LauncherClient, model_id: str) -> dict | None:
    res = client.model.create_state(
        model_id=model_id, name="n", params=[], execution_location=TEMPORARY
    )
    return res["result"]["failed"]["error"] if "failed" in res["result"] else None


@pytest.mark.parametrize(
    ("model_id", "expected"),
    [
        ("hello", None),
        ("exit_code", {"code": "code_terminated", "exitCode": 3, "oom": False}),
        ("kill_self", {"code": "code_terminated", "signal": "SIGTERM", "oom": False}),
        ("memory_hog", {"code": "code_terminated", "signal": "SIGKILL", "oom": True}),
    ],
)
def test_outcomes_without_isolation_layers(
    bare: LauncherClient, model_id: str, expected: dict | None
) -> None:
    assert error(bare, model_id) == expected


def test_sysinfo_reports_every_layer_off_by_configuration(bare: LauncherClient) -> None:
    created = bare.persistent_launcher.create_persistent_launcher(name="p", spec=SPEC)
    launcher_id = created["result"]["persistentLauncherId"]
    layers = bare.persistent_launcher.get_sysinfo(persistent_launcher_id=launcher_id)
    report = dict(line.split(": ", 1) for line in layers["result"]["sandboxLayers"])
    for layer in ("zygote", "pidns", "netns", "mountns", "uid", "seccomp", "cgroup", "rlimits"):
        assert report[layer] == "off: disabled by configuration", (layer, report[layer])
    assert report["memory_watchdog"] == "on"
