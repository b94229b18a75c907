"""The Ray executor on a local multi-node cluster (run by test_ray_cluster.py inside a network
namespace with only loopback; see tests/support/ray_cluster.py).

A head without CPUs and two nodes: "h100" (2 fake H100s) and "a100" (1 fake A100). The hub
is a real ``launcher serve --executor ray`` on a Unix socket; every job runs on a node in
that node's sandbox, its worker protocol relayed to the hub over TCP on loopback.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest

from launcher.client import LauncherClient, LauncherConnectionError
from tests.support.launcher_proc import LauncherProcess, running_launcher
from tests.support.memwatch import peak_rss
from tests.support.mounting import new_model, upload
from tests.support.ray_cluster import in_loopback_netns, is_loopback, local_cluster

SPEC = {"cpus": 1, "memoryMebibytes": 512}
TEMPORARY = {"type": "temporaryLauncher", "spec": SPEC}


def gpus(model: str, count: int) -> dict:
    return {"type": "temporaryLauncher", "spec": {**SPEC, "gpus": {"model": model, "count": count}}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[tuple[object, dict[str, str]]]:
    with local_cluster(tmp_path_factory.mktemp("ray-home")) as made:
        yield made


def _hub_args(cluster, node_dir: Path) -> list[str]:
    return ["--executor", "ray", "--ray-address", cluster.address, "--ray-node-dir", str(node_dir)]


@pytest.fixture(scope="module")
def hub(cluster, tmp_path_factory) -> Iterator[LauncherProcess]:
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="lrh-"))
    node_dir = Path(tempfile.mkdtemp(prefix="lrn-"))
    with running_launcher(root, _hub_args(cluster[0], node_dir)) as proc:
        yield proc


@pytest.fixture
def client(hub: LauncherProcess) -> Iterator[LauncherClient]:
    with LauncherClient(hub.address) as c:
        yield c


def create(client: LauncherClient, model_id: str, params=None, location=TEMPORARY) -> dict:
    return client.model.create_state(
        model_id=model_id, name="t", params=params or [], execution_location=location
    )


def failed(res: dict) -> dict:
    assert "failed" in res.get("result", {}), res
    return res["result"]["failed"]


def placed_on(hub: LauncherProcess, model_id: str) -> list[str]:
    return re.findall(rf"model {model_id}: worker placed on node (\w+)", hub.log())


def test_every_node_and_the_namespace_are_loopback_only(cluster) -> None:
    made, ids = cluster
    assert in_loopback_netns()
    nodes = made.list_all_nodes()
    assert len(nodes) == 3
    for node in nodes:
        assert is_loopback(node.node_ip_address), node.node_ip_address
    host = made.address.rsplit(":", 1)[0]
    assert is_loopback(host)


def test_success_through_the_relay_keeps_keys_intact(client: LauncherClient, hub) -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    res = create(client, "echo", [{"name": "x", "data": [x, x * 2]}])
    success = res["result"]["success"]
    assert set(success["durations"]) == {"total", "createLauncher", "codeStartup", "createState"}
    state = client.model.get_model_state(model_id="echo", state_id=success["stateId"])
    data = {item["key"]: item["data"] for item in state["result"]["data"]}
    assert data["ok"] == b"yes"
    from runtime.tensor import deserialize_many

    decoded = deserialize_many(data["x"])
    np.testing.assert_array_equal(decoded[0].numpy(), x)
    np.testing.assert_array_equal(decoded[1].numpy(), x * 2)
    assert "relay on 127.0.0.1:" in hub.log()


def test_jobs_leave_a_run_job_started_ahead_with_its_zygote(client: LauncherClient, hub) -> None:
    """After a job its Ray worker process keeps the next job's run-job ready (imports done,
    sandbox layers detected, zygote started); later jobs find it and run from it."""
    for _ in range(3):
        assert "success" in create(client, "hello")["result"]
    deadline = time.monotonic() + 30
    ready: list[psutil.Process] = []
    while not ready and time.monotonic() < deadline:
        for proc in _run_job_processes(spares=True):
            with contextlib.suppress(psutil.Error):
                if proc.name() == "run-job-spare" and any(
                    "launcher.sandbox.zygote" in " ".join(c.cmdline()) for c in proc.children()
                ):
                    ready.append(proc)
        time.sleep(0.05)
    assert ready, "no run-job was started ahead"
    node_dir = hub.args[hub.args.index("--ray-node-dir") + 1]
    assert all(node_dir in p.cmdline() for p in ready)
    assert "success" in create(client, "hello")["result"]


@pytest.mark.parametrize(
    ("model", "count", "node", "devices"),
    [("NVIDIA H100 80GB HBM3", 2, "h100", b"0,1"), ("A100", 1, "a100", b"0")],
)
def test_gpu_jobs_are_placed_on_the_node_with_that_gpu_model(
    client, hub, cluster, model, count, node, devices
) -> None:
    res = create(client, "gpu_env", location=gpus(model, count))
    state_id = res["result"]["success"]["stateId"]
    state = client.model.get_model_state(model_id="gpu_env", state_id=state_id)
    data = {item["key"]: item["data"] for item in state["result"]["data"]}
    assert data["gpus"] == devices
    assert placed_on(hub, "gpu_env")[-1] == cluster[1][node][:12]


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({**SPEC, "gpus": {"model": "H100", "count": 3}}, "executionLocation.spec.gpus"),
        ({**SPEC, "gpus": {"model": "B200", "count": 1}}, "executionLocation.spec.gpus"),
        # Two CPUs and an A100 exist, but not on one node.
        (
            {"cpus": 2, "memoryMebibytes": 512, "gpus": {"model": "A100", "count": 1}},
            "executionLocation.spec.gpus",
        ),
        ({"cpus": 1, "memoryMebibytes": 8 << 10}, "executionLocation.spec.memoryMebibytes"),
    ],
)
def test_a_spec_no_node_can_hold_is_refused_not_left_pending(client, spec, path) -> None:
    res = create(client, "hello", location={"type": "temporaryLauncher", "spec": spec})
    assert res["error"]["code"] == "invalid_parameter", res
    assert res["error"]["parameterName"] == path, res
    assert "no node of the cluster" in res["error"]["reason"]
    assert "success" in create(client, "hello")["result"]  # others keep being served


BIG = {"type": "temporaryLauncher", "spec": {"cpus": 1, "memoryMebibytes": 1536}}


class NodePeak:
    """The highest RSS any ``launcher run-job`` process reaches while the block runs."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for proc in _run_job_processes():
                with contextlib.suppress(psutil.Error):
                    self.peak = max(self.peak, proc.memory_info().rss)
            self._stop.wait(0.01)

    def __enter__(self) -> NodePeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_256_mib_param_and_256_mib_state_through_the_relay_with_bounded_memory(client, hub) -> None:
    x = np.ones((1 << 26,), dtype=np.float32)  # 256 MiB in one tensor
    with peak_rss(hub.pid) as rss, NodePeak() as node:
        res = create(client, "sum_param", [{"name": "x", "data": [x]}], BIG)
    keys = _keys(client, "sum_param", res)
    assert np.frombuffer(keys["count"], np.int64)[0] == x.size
    assert np.frombuffer(keys["sum"], np.float64)[0] == float(x.size)
    assert rss.growth_mib < 64, f"the hub grew {rss.growth_mib:.0f} MiB"
    assert 0 < node.peak < 160 << 20, f"run-job peaked at {node.peak >> 20} MiB"
    mib = np.array(86, dtype=np.int64)  # three keys of 86 MiB: 258 MiB of state
    with peak_rss(hub.pid) as rss, NodePeak() as node:
        res = create(client, "big_state", [{"name": "mib", "data": [mib]}], BIG)
    state_id = res["result"]["success"]["stateId"]
    files = sorted((hub.root / "states" / state_id).iterdir())
    assert [f.stat().st_size for f in files] == [86 << 20] * 3
    assert rss.growth_mib < 64, f"the hub grew {rss.growth_mib:.0f} MiB"
    assert 0 < node.peak < 160 << 20, f"run-job peaked at {node.peak >> 20} MiB"


def _keys(client: LauncherClient, model_id: str, res: dict) -> dict[str, bytes]:
    state_id = res["result"]["success"]["stateId"]
    state = client.model.get_model_state(model_id=model_id, state_id=state_id)
    return {item["key"]: item["data"] for item in state["result"]["data"]}


def test_a_mounted_model_travels_as_a_bundle_and_its_state_through_the_relay(client, hub) -> None:
    other = new_model(hub)
    upload(client, other, weights=b"\x01\x02\x03" * 1000)
    location_res = client.model.create_state(
        model_id="mounter",
        name="m",
        params=[],
        execution_location=TEMPORARY,
        mount_models=[{"modelId": other}],
    )
    keys = _keys(client, "mounter", location_res)
    assert keys[f"{other}/weights"] == b"\x01\x02\x03" * 1000


def test_exception_at_code_startup(client) -> None:
    f = failed(create(client, "raise_startup"))
    assert f["error"]["code"] == "exception" and f["error"]["at"] == "codeStartup"
    assert "broken at import on purpose" in f["error"]["exceptionDetails"]


def test_exception_at_create_state(client) -> None:
    f = failed(create(client, "raise_create"))
    assert f["error"]["code"] == "exception" and f["error"]["at"] == "createState"
    assert "createModelState failed on purpose" in f["error"]["exceptionDetails"]


def test_exit_code_and_signal_are_reported_from_the_node(client) -> None:
    f = failed(create(client, "exit_code"))
    assert f["error"] == {"code": "code_terminated", "exitCode": 3, "oom": False}
    f = failed(create(client, "kill_self"))
    assert f["error"] == {"code": "code_terminated", "signal": "SIGTERM", "oom": False}


def test_node_sandbox_proves_oom(client) -> None:
    location = {"type": "temporaryLauncher", "spec": {"cpus": 1, "memoryMebibytes": 128}}
    f = failed(create(client, "memory_hog", location=location))
    assert f["error"]["code"] == "code_terminated" and f["error"]["oom"] is True, f


def test_both_deadlines(client) -> None:
    f = failed(create(client, "slow_startup"))
    assert f["error"] == {"code": "max_duration_exceeded", "at": "codeStartup"}
    f = failed(create(client, "slow_create"))
    assert f["error"] == {"code": "max_duration_exceeded", "at": "createState"}


def _start_in_background(client: LauncherClient, model_id: str, location=TEMPORARY):
    """(thread, box, state_id-event): the job streams in a thread until createState starts."""
    box: dict = {}
    started = threading.Event()

    def run() -> None:
        try:
            for event in client.model.create_state_stream(
                model_id=model_id, name="bg", params=[], execution_location=location
            ):
                if event.get("event") == "phaseStarted" and event["phase"] == "createState":
                    box["state_id"] = event["stateId"]
                    started.set()
                if "result" in event or "error" in event:
                    box["final"] = event
                    box["at"] = time.monotonic()
        except LauncherConnectionError as e:  # the hub was killed on purpose
            box["connection"] = str(e)
        started.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(60), f"the job never reached createState: {box}"
    return thread, box


def _run_job_processes(spares: bool = False) -> list[psutil.Process]:
    """The ``run-job`` processes holding a job (with ``spares``: the idle ones started ahead
    too, named ``run-job-spare`` until a job takes them)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "name"]):
        cmdline = proc.info["cmdline"] or []
        if "launcher.executors.ray.node" in cmdline or (
            "run-job" in cmdline and "launcher.cli" in cmdline
        ):
            if spares or proc.info["name"] != "run-job-spare":
                found.append(proc)
    return found


def test_cancel_kills_the_node_worker(client) -> None:
    thread, box = _start_in_background(client, "sleeper")
    state_id = box["state_id"]
    assert client.model.cancel_create_state(model_id="sleeper", state_id=state_id) == {"result": {}}
    thread.join(30)
    assert failed(box["final"])["error"] == {"code": "cancelled"}
    deadline = time.monotonic() + 15
    while _run_job_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _run_job_processes() == []


def test_the_ray_worker_killed_mid_job_is_launcher_terminated_and_takes_the_worker(
    client,
) -> None:
    before = {p.pid for p in _run_job_processes()}
    thread, box = _start_in_background(client, "sleeper")
    (mine,) = [p for p in _run_job_processes() if p.pid not in before]
    tree = [mine, *mine.children(recursive=True)]
    ray_worker = mine.parent()
    assert ray_worker is not None
    ray_worker.kill()  # Ray sees WorkerCrashedError; run-job dies with its parent
    thread.join(30)
    assert failed(box["final"])["error"] == {"code": "launcher_terminated"}
    gone, alive = psutil.wait_procs(tree, timeout=15)
    assert alive == [], alive
    assert "success" in create(client, "hello")["result"]


def test_warm_sessions_on_a_persistent_launcher(client, hub) -> None:
    made = client.persistent_launcher.create_persistent_launcher(name="ray-box", spec=SPEC)
    launcher_id = made["result"]["persistentLauncherId"]
    location = {
        "type": "persistentLauncher",
        "persistentLauncherId": made["result"]["persistentLauncherId"],
    }
    first = create(client, "counter", location=location)["result"]["success"]
    second = create(client, "counter", location=location)["result"]["success"]
    assert "codeStartup" in first["durations"]
    assert "codeStartup" not in second["durations"]  # the warm session was reused
    state = client.model.get_model_state(model_id="counter", state_id=second["stateId"])
    data = {item["key"]: item["data"] for item in state["result"]["data"]}
    assert data["calls"] == b"2"
    # The launcher is one Ray actor holding its spec; one worker was placed, then reused.
    assert f"persistent launcher {launcher_id}: a Ray actor holds its spec" in hub.log()
    assert len(placed_on(hub, "counter")) == 1
    third = create(client, "counter", location=location)["result"]["success"]  # still warm
    assert "codeStartup" not in third["durations"]
    # Other models failing on the same launcher take neither the actor nor the warm session.
    assert failed(create(client, "exit_code", location=location))["error"]["exitCode"] == 3
    assert failed(create(client, "raise_startup", location=location))["error"]["at"] == (
        "codeStartup"
    )
    fourth = create(client, "counter", location=location)["result"]["success"]
    assert "codeStartup" not in fourth["durations"]
    assert _keys(client, "counter", {"result": {"success": fourth}})["calls"] == b"4"
    info = client.persistent_launcher.get_sysinfo(
        persistent_launcher_id=location["persistentLauncherId"]
    )
    assert any(layer.startswith("cgroup") for layer in info["result"]["sandboxLayers"])
    # Deleting the launcher stops its warm session: the node's resources are free again.
    deleted = client.persistent_launcher.delete_persistent_launcher(
        persistent_launcher_id=location["persistentLauncherId"]
    )
    assert deleted == {"result": {}}
    deadline = time.monotonic() + 15
    while _run_job_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _run_job_processes() == []


def test_a_persistent_launcher_holds_its_spec_until_it_is_deleted(client) -> None:
    spec = {**SPEC, "gpus": {"model": "A100", "count": 1}}  # the only A100
    made = client.persistent_launcher.create_persistent_launcher(name="a100-box", spec=spec)
    launcher_id = made["result"]["persistentLauncherId"]
    waiting: dict = {}
    job = threading.Thread(
        target=lambda: waiting.update(res=create(client, "gpu_env", location=gpus("A100", 1)))
    )
    job.start()
    time.sleep(4)
    assert "res" not in waiting  # the launcher's actor holds the A100: the job waits
    deleted = client.persistent_launcher.delete_persistent_launcher(
        persistent_launcher_id=launcher_id
    )
    assert deleted == {"result": {}}
    job.join(60)
    assert "success" in waiting["res"]["result"], waiting


def _samples(client: LauncherClient, launcher_id: str, since: int | None = None) -> list[dict]:
    res = client.persistent_launcher.get_sysinfo(
        persistent_launcher_id=launcher_id, from_timestamp=since
    )
    assert "result" in res, res
    return res["result"]["sysinfo"]


def _sampled_on(hub: LauncherProcess, launcher_id: str) -> list[tuple[str, str]]:
    return re.findall(
        rf"persistent launcher {launcher_id}: sampled on node (\w+) \((\w+)\)", hub.log()
    )


def test_get_sysinfo_reports_the_samples_of_the_node_that_holds_the_launcher(
    client, hub, cluster
) -> None:
    """Each launcher's actor samples its own cgroup on its node: proven by the node id the
    samples come with (the node its spec's GPU pins it to, the one its job ran on), and by
    figures only that cgroup has (the busy one's 200 MiB, bounded by its 512 MiB budget; the
    idle one's nothing), not the hub's machine figures."""

    def make(name: str, gpu: str) -> str:
        spec = {**SPEC, "gpus": {"model": gpu, "count": 1}}
        made = client.persistent_launcher.create_persistent_launcher(name=name, spec=spec)
        return made["result"]["persistentLauncherId"]

    before = int(time.time() * 1000)
    busy, idle = make("busy-h100", "H100"), make("idle-a100", "A100")
    try:
        first = _samples(client, busy)[0]
        assert isinstance(first["timestamp"], int)
        assert before - 1000 <= first["timestamp"] <= int(time.time() * 1000)  # from creation
        done: dict = {}
        params = [
            {"name": "mib", "data": [np.array(200, dtype=np.float64)]},
            {"name": "seconds", "data": [np.array(4, dtype=np.float64)]},
        ]
        location = {"type": "persistentLauncher", "persistentLauncherId": busy}
        job = threading.Thread(
            target=lambda: done.update(res=create(client, "hold_memory", params, location))
        )
        job.start()
        peak = 0
        deadline = time.monotonic() + 60
        while job.is_alive() and time.monotonic() < deadline:  # bounded in time
            peak = max(peak, _samples(client, busy)[-1]["memory"])
            if peak >= 200 << 20:
                break
            time.sleep(0.2)
        quiet = _samples(client, idle)[-1]
        job.join(90)
        assert "success" in done["res"]["result"], done
        assert 200 << 20 <= peak <= 512 << 20, peak  # its cgroup on the node, in its budget
        assert quiet["memory"] < 16 << 20 and quiet["cpus"] == 0, quiet  # no worker there
        ids = cluster[1]
        assert _sampled_on(hub, busy) == [(ids["h100"][:12], "cgroup")]
        assert placed_on(hub, "hold_memory")[-1] == ids["h100"][:12]
        assert _sampled_on(hub, idle) == [(ids["a100"][:12], "cgroup")]
        every = _samples(client, busy)
        stamps = [s["timestamp"] for s in every]
        assert stamps == sorted(stamps) and all(isinstance(t, int) for t in stamps)
        assert len(every) <= 720  # the bounded window
        assert all(s["timestamp"] >= stamps[-1] for s in _samples(client, busy, stamps[-1]))
    finally:
        for launcher_id in (busy, idle):
            deleted = client.persistent_launcher.delete_persistent_launcher(
                persistent_launcher_id=launcher_id
            )
            assert deleted == {"result": {}}


def _relay_port(hub: LauncherProcess) -> int:
    return int(re.findall(r"relay on 127\.0\.0\.1:(\d+)", hub.log())[0])


@pytest.mark.parametrize(
    "line",
    [
        b"LRELAY1 data 0123456789abcdef.not-the-secret\n",
        b"LRELAY1 control nope\n",
        b"GET / HTTP/1.1\n",
        b"LRELAY1 data " + b"x" * 400 + b"\n",
    ],
)
def test_a_wrong_token_is_refused_and_jobs_go_on(client, hub, line) -> None:
    with socket.create_connection(("127.0.0.1", _relay_port(hub)), timeout=10) as sock:
        sock.sendall(line)
        answer = sock.recv(256)
    assert answer.startswith(b"NO "), answer
    assert "success" in create(client, "hello")["result"]


def test_hub_killed_takes_the_node_workers_with_it(cluster, tmp_path_factory) -> None:
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="lrk-"))
    node_dir = Path(tempfile.mkdtemp(prefix="lrn-"))
    before = {p.pid for p in _run_job_processes()}
    with running_launcher(root, _hub_args(cluster[0], node_dir)) as other:
        with LauncherClient(other.address) as c:
            _start_in_background(c, "sleeper")
            mine = [p for p in _run_job_processes() if p.pid not in before]
            assert len(mine) == 1
            tree = [mine[0], *mine[0].children(recursive=True)]
            assert len(tree) >= 2  # run-job and the sandboxed worker under it
            other.stop(signal.SIGKILL)
    gone, alive = psutil.wait_procs(tree, timeout=15)
    assert alive == [], alive


def test_hub_frozen_its_node_workers_die_of_its_silence(cluster) -> None:
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="lrf-"))
    node_dir = Path(tempfile.mkdtemp(prefix="lrn-"))
    before = {p.pid for p in _run_job_processes()}
    with running_launcher(root, _hub_args(cluster[0], node_dir)) as other:
        with LauncherClient(other.address) as c:
            _start_in_background(c, "sleeper")
            (mine,) = [p for p in _run_job_processes() if p.pid not in before]
            tree = [mine, *mine.children(recursive=True)]
            frozen = time.monotonic()
            os.kill(other.pid, signal.SIGSTOP)
            try:
                gone, alive = psutil.wait_procs(tree, timeout=30)
                took = time.monotonic() - frozen
            finally:
                os.kill(other.pid, signal.SIGCONT)
    assert alive == [], alive
    print(f"frozen hub: node workers gone after {took:.2f} s")


def _node(cluster, name: str):
    made, ids = cluster
    return next(n for n in made.list_all_nodes() if n.node_id == ids[name])


def test_node_frozen_mid_job_is_launcher_terminated(client, cluster, hub) -> None:
    thread, box = _start_in_background(client, "sleeper", gpus("A100", 1))
    raylet = _node(cluster, "a100").all_processes["raylet"][0].process
    frozen = time.monotonic()
    os.kill(raylet.pid, signal.SIGSTOP)
    try:
        thread.join(60)
    finally:
        os.kill(raylet.pid, signal.SIGCONT)
    assert failed(box["final"])["error"] == {"code": "launcher_terminated"}
    print(f"frozen node detected in {box['at'] - frozen:.2f} s")


def test_node_removed_mid_job_is_launcher_terminated(client, cluster, hub) -> None:
    thread, box = _start_in_background(client, "sleeper", gpus("H100", 1))
    # A second job waits for both H100s (one is taken): it is pending in Ray, not running.
    waiting: dict = {}
    pending = threading.Thread(
        target=lambda: waiting.update(res=create(client, "gpu_env", location=gpus("H100", 2)))
    )
    pending.start()
    time.sleep(2)
    assert "res" not in waiting
    removed = time.monotonic()
    cluster[0].remove_node(_node(cluster, "h100"))
    thread.join(60)
    assert failed(box["final"])["error"] == {"code": "launcher_terminated"}
    pending.join(30)  # the waiting job fits no node any more: it ends too, not pending forever
    assert failed(waiting["res"])["error"] == {"code": "launcher_terminated"}
    print(f"removed node detected in {box['at'] - removed:.2f} s")
    # The hub keeps serving: a job that fits no node any more is refused, not left pending
    # (once the hub has read the node table again: it does every second).
    time.sleep(3)
    res = create(client, "hello", location=gpus("H100", 1))
    assert res["error"]["code"] == "invalid_parameter", res
