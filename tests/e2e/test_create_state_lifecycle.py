"""Admission, memory limits and crashes, each with a launcher of its own."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from pathlib import Path

import numpy as np

from launcher.client import LauncherClient
from tests.support.launcher_proc import running_launcher
from tests.support.specs import TEMPORARY


class BackgroundJobs:
    """createState calls run in threads: ``started`` is set at the first phase event,
    ``results[name]`` holds each call's final response."""

    def __init__(self, client: LauncherClient) -> None:
        self.client = client
        self.results: dict[str, dict] = {}
        self.started = threading.Event()

    def run(self, name: str, model: str) -> None:
        for event in self.client.model.create_state_stream(
            model_id=model, name=name, params=[], execution_location=TEMPORARY
        ):
            if event.get("event") == "phaseStarted":
                self.started.set()
            if "result" in event or "error" in event:
                self.results[name] = event


def test_full_queue_is_server_overloaded_and_queued_jobs_run(tmp_path_factory) -> None:
    root = Path(tmp_path_factory.mktemp("ov", numbered=True))
    with running_launcher(root, ["--max-concurrent-jobs", "1", "--max-queued-jobs", "1"]) as proc:
        with LauncherClient(proc.address) as client:
            jobs = BackgroundJobs(client)
            first = threading.Thread(target=jobs.run, args=("first", "sleeper"))
            first.start()
            assert jobs.started.wait(30)
            second = threading.Thread(target=jobs.run, args=("second", "hello"))
            second.start()
            deadline = 30
            while not client.model.get_creating_states(model_id="hello")["result"]["states"]:
                deadline -= 0.05
                assert deadline > 0
                threading.Event().wait(0.05)
            third = client.model.create_state(
                model_id="hello", name="third", params=[], execution_location=TEMPORARY
            )
            assert third["result"]["failed"]["error"] == {"code": "server_overloaded"}
            sleeping = client.model.get_creating_states(model_id="sleeper")["result"]["states"]
            client.model.cancel_create_state(model_id="sleeper", state_id=sleeping[0]["id"])
            first.join(30)
            second.join(30)
            assert jobs.results["first"]["result"]["failed"]["error"] == {"code": "cancelled"}
            assert "success" in jobs.results["second"]["result"]


def test_memory_limit_kill_is_code_terminated_with_oom(client: LauncherClient) -> None:
    res = client.model.create_state(
        model_id="memory_hog",
        name="hog",
        params=[],
        execution_location={
            "type": "temporaryLauncher",
            "spec": {"cpus": 1, "memoryMebibytes": 128},
        },
    )
    error = res["result"]["failed"]["error"]
    assert error["code"] == "code_terminated"
    assert error["oom"] is True


def test_launcher_killed_mid_job_loses_nothing_and_answers_launcher_terminated(
    tmp_path_factory,
) -> None:
    root = Path(tmp_path_factory.mktemp("kill", numbered=True))
    with running_launcher(root) as proc:
        with LauncherClient(proc.address) as client:
            done = client.model.create_state(
                model_id="echo",
                name="kept",
                params=[{"name": "x", "data": [np.arange(5, dtype=np.float32)]}],
                execution_location=TEMPORARY,
            )
            kept = done["result"]["success"]["stateId"]
            state_id = None
            for event in client.model.create_state_stream(
                model_id="sleeper", name="lost", params=[], execution_location=TEMPORARY
            ):
                if event.get("event") == "phaseStarted" and event["phase"] == "createState":
                    state_id = event["stateId"]
                    break
        proc.stop(signal.SIGKILL)
    with running_launcher(root) as proc:
        with LauncherClient(proc.address) as client:
            lost = client.model.wait_for_state_to_be_created(model_id="sleeper", state_id=state_id)
            assert lost["result"]["failed"]["error"] == {"code": "launcher_terminated"}
            models = client.model.get_models(filter={"ids": ["sleeper", "echo"]})["result"]
            by_id = {m["id"]: m for m in models["models"]}
            assert by_id["sleeper"]["states"] == []
            assert [s["id"] for s in by_id["echo"]["states"]] == [kept]
            data = client.model.get_model_state(model_id="echo", state_id=kept)["result"]["data"]
            assert {d["key"] for d in data} == {"x", "ok"}
        # nothing of the lost job on disk (echo's small keys live in the database row)
        assert [p.name for p in (root / "states").iterdir() if p.name != kept] == []


def test_long_root_puts_worker_sockets_in_the_temp_folder_and_cleans_stale_ones(
    tmp_path_factory, monkeypatch
) -> None:
    root = Path(tmp_path_factory.mktemp("long", numbered=True)) / ("r" * 90)
    root.mkdir()
    private_tmp = Path(tmp_path_factory.mktemp("tmpdir", numbered=True))
    stale = private_tmp / "launcher-run-999999999-dead"  # a launcher that no longer runs
    stale.mkdir()
    monkeypatch.setenv("TMPDIR", str(private_tmp))
    with running_launcher(root, address=f"unix://{private_tmp}/l.sock") as proc:
        assert not stale.exists()
        assert len(list(private_tmp.glob(f"launcher-run-{proc.pid}-*"))) == 1
        with LauncherClient(proc.address) as client:
            res = client.model.create_state(
                model_id="hello", name="long", params=[], execution_location=TEMPORARY
            )
            assert "success" in res["result"]
    assert list(private_tmp.glob("launcher-run-*")) == []


def test_cancelling_a_queued_job_ends_it_before_it_runs(tmp_path_factory) -> None:
    root = Path(tmp_path_factory.mktemp("cq", numbered=True))
    with running_launcher(root, ["--max-concurrent-jobs", "1"]) as proc:
        with LauncherClient(proc.address) as client:
            jobs = BackgroundJobs(client)
            running = threading.Thread(target=jobs.run, args=("running", "sleeper"))
            running.start()
            assert jobs.started.wait(30)
            queued = threading.Thread(target=jobs.run, args=("queued", "hello"))
            queued.start()
            waiting: list[dict] = []
            for _ in range(600):
                waiting = client.model.get_creating_states(model_id="hello")["result"]["states"]
                if waiting:
                    break
                threading.Event().wait(0.05)
            (job,) = waiting
            assert client.model.cancel_create_state(model_id="hello", state_id=job["id"]) == {
                "result": {}
            }
            queued.join(30)
            failed = jobs.results["queued"]["result"]["failed"]
            assert failed["error"] == {"code": "cancelled"}
            assert set(failed["durations"]) == {"total"}  # no phase ran
            sleeping = client.model.get_creating_states(model_id="sleeper")["result"]["states"]
            client.model.cancel_create_state(model_id="sleeper", state_id=sleeping[0]["id"])
            running.join(30)
            assert jobs.results["running"]["result"]["failed"]["error"] == {"code": "cancelled"}


def test_a_one_message_job_named_by_get_creating_states_answers_launcher_terminated(
    tmp_path_factory,
) -> None:
    """The one-message call writes its job's record with the result, unless an answer names
    the running job first: then the record exists, and a crash leaves it answering."""
    root = Path(tmp_path_factory.mktemp("kill-unary", numbered=True))
    with running_launcher(root) as proc:
        with LauncherClient(proc.address) as client:

            def call() -> None:  # answered by the launcher's end (the client raises then)
                with contextlib.suppress(Exception), LauncherClient(proc.address) as other:
                    other.model.create_state(
                        model_id="sleeper", name="lost", params=[], execution_location=TEMPORARY
                    )

            caller = threading.Thread(target=call, daemon=True)
            caller.start()
            deadline = time.monotonic() + 30
            creating: list[dict] = []
            while not creating and time.monotonic() < deadline:
                creating = client.model.get_creating_states(model_id="sleeper")["result"]["states"]
                time.sleep(0.05)
            assert creating, "the job never showed"
            state_id = creating[0]["id"]
        proc.stop(signal.SIGKILL)
    with running_launcher(root) as proc:
        with LauncherClient(proc.address) as client:
            lost = client.model.wait_for_state_to_be_created(model_id="sleeper", state_id=state_id)
            assert lost["result"]["failed"]["error"] == {"code": "launcher_terminated"}
