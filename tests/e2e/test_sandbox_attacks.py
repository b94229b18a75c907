"""The sandbox against attacks, through a real launcher: each attack (the ``attacker`` model)
fails, and another client keeps being served meanwhile and after (within SERVED_BOUND).

Two launchers: every layer on, and ``--sandbox-disable namespaces`` (the same seccomp filter
and no capabilities must still apply). Both are started with a secret in their environment.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import runtime
from launcher.client import LauncherClient
from tests.support.attacks import SERVED_BOUND, attack, cheap_call_seconds
from tests.support.bounds import LatencyProbe
from tests.support.launcher_proc import LauncherProcess, running_launcher
from tests.support.specs import TEMPORARY

SECRET_HEAD, SECRET_TAIL = f"sk-{uuid.uuid4().hex}", uuid.uuid4().hex
ATTACKER = Path(__file__).parent.parent / "models" / "e2e" / "attacker"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the full sandbox needs root")


def _with_secret(extra: list[str]) -> Iterator[LauncherProcess]:
    """A launcher whose environment holds the secret (never set in this process's own)."""
    with tempfile.TemporaryDirectory(prefix="la-") as root:
        saved = os.environ.get("LAUNCHER_TEST_SECRET")
        os.environ["LAUNCHER_TEST_SECRET"] = SECRET_HEAD + SECRET_TAIL
        try:
            launcher = running_launcher(Path(root), extra)
            proc = launcher.__enter__()
        finally:
            if saved is None:
                del os.environ["LAUNCHER_TEST_SECRET"]
            else:
                os.environ["LAUNCHER_TEST_SECRET"] = saved
        try:
            yield proc
        finally:
            launcher.__exit__(None, None, None)


@pytest.fixture(scope="module", params=["full", "no-namespaces"])
def served(request: pytest.FixtureRequest) -> Iterator[LauncherProcess]:
    extra = ["--max-concurrent-jobs", "4"]
    if request.param == "no-namespaces":
        extra += ["--sandbox-disable", "namespaces"]
    yield from _with_secret(extra)


@pytest.fixture(scope="module")
def full() -> Iterator[LauncherProcess]:
    yield from _with_secret(["--max-concurrent-jobs", "4"])


def _client(launcher: LauncherProcess) -> LauncherClient:
    return LauncherClient(launcher.address)


def _still_served(launcher: LauncherProcess) -> None:
    assert cheap_call_seconds(launcher.address) < SERVED_BOUND
    with _client(launcher) as client:
        res = client.model.create_state(
            model_id="hello",
            name="after",
            params=[],
            execution_location=TEMPORARY,
        )
    assert "success" in res.get("result", {}), res


def _fixed_attack(launcher: LauncherProcess, what: str, arg: str, toml: str) -> str:
    """A copy of the attacker that always runs one attack (for runtimes without our params)."""
    model_id = f"attacker-{uuid.uuid4().hex[:8]}"
    folder = launcher.root / "models" / model_id
    shutil.copytree(ATTACKER, folder)
    (folder / "attack.json").write_text(json.dumps([what, arg]))
    (folder / "model.toml").write_text(toml)
    return model_id


def _run_fixed(client: LauncherClient, model_id: str) -> object:
    res = client.model.create_state(
        model_id=model_id,
        name="fixed",
        params=[],
        execution_location=TEMPORARY,
    )
    assert "success" in res.get("result", {}), res
    data = client.model.get_model_state(
        model_id=model_id, state_id=res["result"]["success"]["stateId"]
    )
    return json.loads(data["result"]["data"][0]["data"])


# -- the daemon's environment and memory ------------------------------------------------------


@pytest.mark.parametrize(
    "start", ["zygote fork", "fresh process", "official runtime"], ids=["fork", "fresh", "official"]
)
def test_no_copy_of_the_daemon_secret_in_worker_memory(served: LauncherProcess, start: str) -> None:
    halves = f"{SECRET_HEAD}|{SECRET_TAIL}"
    with _client(served) as client, LatencyProbe(served.address) as meanwhile:
        if start == "zygote fork":
            report = attack(client, "env_memory", halves)
        else:
            toml = (
                "fresh_process = true\n"
                if start == "fresh process"
                else 'runtime = "decthings-model"\n'
            )
            report = _run_fixed(client, _fixed_attack(served, "env_memory", halves, toml))
    assert isinstance(report, dict), report
    assert report["found"] == [], report
    assert report["scanned_bytes"] > 1 << 20  # it really read its memory
    assert meanwhile.worst < SERVED_BOUND
    _still_served(served)


# -- io_uring sockets and the seccomp allowlist -----------------------------------------------


@pytest.mark.parametrize("family", ["inet", "inet6", "vsock", "netlink"])
def test_io_uring_sockets_are_refused(served: LauncherProcess, family: str) -> None:
    with _client(served) as client, LatencyProbe(served.address) as meanwhile:
        report = attack(client, "io_uring", family)
    assert report == "refused: io_uring_setup: EPERM"
    assert meanwhile.worst < SERVED_BOUND
    _still_served(served)


def test_each_denied_family_fails_with_eperm(served: LauncherProcess) -> None:
    with _client(served) as client, LatencyProbe(served.address) as meanwhile:
        report = attack(client, "denied")
    assert {name: result for name, result in report.items() if result != "EPERM"} == {}
    assert len(report) >= 25
    assert meanwhile.worst < SERVED_BOUND
    _still_served(served)


def test_worker_has_no_capability_in_any_mode(served: LauncherProcess) -> None:
    with _client(served) as client:
        report = attack(client, "privileges")
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(report[key], 16) == 0, report
    assert report["NoNewPrivs"] == "1" and report["Seccomp"] == "2"
    _still_served(served)


def test_layers_are_reported_one_by_one(served: LauncherProcess) -> None:
    log = served.log()
    for layer in ("seccomp", "capabilities", "cgroup_memory"):
        assert f"sandbox layer {layer}: on" in log
    for controller in ("cpu", "pids", "io"):  # each on its own line, on or off with a reason
        line = next(x for x in log.splitlines() if f"sandbox layer cgroup_{controller}: " in x)
        state = line.split(f"cgroup_{controller}: ", 1)[1]
        assert state == "on" or (state.startswith("off: ") and len(state) > 6), line
    assert "sandbox layer cgroup_io: off: " in log
    if "--sandbox-disable" in " ".join(served.args):
        assert "sandbox layer disk_budget: off: needs the mount namespace" in log
    else:
        assert "sandbox layer disk_budget: on" in log


# -- one disk budget --------------------------------------------------------------------------


@pytest.mark.parametrize("place", ["home", "tmp", "shm"])
def test_filling_one_place_stops_at_the_budget(full: LauncherProcess, place: str) -> None:
    with _client(full) as client, LatencyProbe(full.address) as meanwhile:
        report = attack(client, "fill", f"{place}:100", disk=64)
    assert report[f"{place}_size_mib"] == 64
    assert report[place].startswith("refused after ") and report[place].endswith(": ENOSPC")
    assert int(report[place].split()[2]) <= 64
    assert meanwhile.worst < SERVED_BOUND
    _still_served(full)


def test_the_places_share_one_budget(full: LauncherProcess) -> None:
    with _client(full) as client:
        report = attack(client, "fill", "home,tmp,shm:30", disk=64)
    written = [
        int(report[p].split()[1 if report[p].startswith("wrote") else 2])
        for p in ("home", "tmp", "shm")
    ]
    assert sum(written) <= 64, report
    assert report["shm"].endswith(": ENOSPC"), report
    _still_served(full)


def test_inodes_are_part_of_the_budget(full: LauncherProcess) -> None:
    with _client(full) as client, LatencyProbe(full.address) as meanwhile:
        report = attack(client, "inodes", "20000", disk=16)
    assert report.startswith("refused after ") and report.endswith(": ENOSPC"), report
    assert int(report.split()[2].rstrip(":")) <= 1024
    assert meanwhile.worst < SERVED_BOUND
    _still_served(full)


def test_mountinfo_shows_no_host_path_beyond_the_binds(full: LauncherProcess) -> None:
    with _client(full) as client:
        points = attack(client, "mountinfo")
    root = os.path.realpath(full.root)
    bound = [
        os.path.join(root, "models", "attacker"),
        os.path.join(root, "run"),
        sys.prefix,
        sys.base_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
        str(Path(runtime.__file__).parent),
    ]
    made = ("/", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/tmp", "/proc")
    for point in points:
        if point in made or point.startswith(("/dev", "/etc")):
            continue
        assert any(point == b or point.startswith(b.rstrip("/") + "/") for b in bound), points
    etc = [p for p in points if p.startswith("/etc/")]
    assert "/etc/resolv.conf" not in etc and "/etc" not in points  # a made /etc, not the host's


def test_etc_is_minimal(full: LauncherProcess) -> None:
    with _client(full) as client:
        report = attack(client, "etc")
    assert "resolv.conf" not in report["names"]
    assert "shadow" not in report["names"]
    assert report["passwd"].startswith("root:x:0:0:")
    assert "ssl" in report["names"]


# -- folders that lead out of models/ ---------------------------------------------------------


def test_model_and_mount_folders_symlinked_to_the_data_root_are_refused(
    full: LauncherProcess,
) -> None:
    link = full.root / "models" / f"evil-{uuid.uuid4().hex[:8]}"
    os.symlink(full.root, link)
    try:
        with _client(full) as client, LatencyProbe(full.address) as meanwhile:
            res = client.model.create_state(
                model_id=link.name, name="evil", params=[], execution_location=TEMPORARY
            )
            assert res["result"]["failed"]["error"]["code"] == "invalid_executable_file", res
            mounted = client.model.create_state(
                model_id="hello",
                name="evil-mount",
                params=[],
                execution_location=TEMPORARY,
                mount_models=[{"modelId": link.name}],
            )
            assert mounted["error"]["code"] == "model_to_mount_not_found", mounted
        assert meanwhile.worst < SERVED_BOUND
    finally:
        link.unlink()
    _still_served(full)
