"""Job logs end to end: a real launcher, real workers printing, ``get_state_logs`` and the
``logs`` CLI; each job gets exactly its own lines, also on a reused warm session."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np

from launcher.client import LauncherClient
from tests.support.launcher_proc import LauncherProcess
from tests.support.specs import TEMPORARY
from tests.support.tenants import launcher_with_keys


def param(name: str, value: int) -> dict[str, Any]:
    return {"name": name, "data": [np.array(value, dtype=np.int32)]}


def run_chatty(client: LauncherClient, tag: int, mode: int = 0, where: Any = TEMPORARY) -> str:
    res = client.model.create_state(
        model_id="chatty",
        name=f"tag-{tag}",
        params=[param("tag", tag), param("mode", mode)],
        execution_location=where,
    )
    outcome = res["result"]
    return (outcome.get("success") or outcome["failed"]).get("stateId") or res


def logs_of(client: LauncherClient, state_id: str, model_id: str = "chatty") -> dict[str, Any]:
    res = client.model.get_state_logs(model_id, state_id)
    assert "result" in res, res
    return res["result"]


def texts(lines: list[dict[str, Any]], stream: str) -> list[str]:
    return [line["text"] for line in lines if line["stream"] == stream]


def test_both_streams_and_the_launchers_lines_are_in_the_jobs_own_log(
    client: LauncherClient,
) -> None:
    state_id = run_chatty(client, 41)
    log = logs_of(client, state_id)
    assert log["truncated"] is False
    lines = log["lines"]
    assert texts(lines, "stdout") == ["chatty: imported", "out 41"]
    assert texts(lines, "stderr") == ["chatty: imported, on stderr", "err 41"]
    launcher = texts(lines, "launcher")
    assert launcher[0].startswith(f"accepted {state_id}: model chatty")
    assert "phase createLauncher started" in launcher
    assert any(t.startswith("phase createState finished in ") for t in launcher)
    assert launcher[-1].startswith("outcome: success (total ")
    stamps = [line["timestamp"] for line in lines]
    assert all(isinstance(t, int) for t in stamps) and stamps == sorted(stamps)
    # interleaved as written: the import lines come in codeStartup, the job's in createState
    order = [line["text"] for line in lines]
    assert order.index("chatty: imported") < order.index("phase createState started")
    assert order.index("phase createState started") < order.index("out 41")


def test_each_job_on_a_reused_warm_session_gets_exactly_its_own_lines(
    client: LauncherClient,
) -> None:
    res = client.persistent_launcher.create_persistent_launcher(
        name="logs", spec={"cpus": 1, "memoryMebibytes": 512}
    )
    where = {
        "type": "persistentLauncher",
        "persistentLauncherId": res["result"]["persistentLauncherId"],
    }
    first, second = run_chatty(client, 1, where=where), run_chatty(client, 2, where=where)
    a, b = logs_of(client, first)["lines"], logs_of(client, second)["lines"]
    assert texts(a, "stdout") == ["chatty: imported", "out 1"]
    assert texts(a, "stderr") == ["chatty: imported, on stderr", "err 1"]
    # the second job reused the warm session: no import, no codeStartup, only its own lines
    assert texts(b, "stdout") == ["out 2"]
    assert texts(b, "stderr") == ["err 2"]
    assert not any("codeStartup" in t for t in texts(b, "launcher"))


def test_follow_delivers_lines_before_the_job_ends(client: LauncherClient) -> None:
    seen: list[tuple[dict[str, Any], bool]] = []
    done = threading.Event()
    ids: list[str] = []

    def create() -> None:
        ids.append(run_chatty(client, 7, mode=2))
        done.set()

    creator = threading.Thread(target=create)
    creator.start()
    deadline = time.monotonic() + 30
    state_id = None
    while state_id is None and time.monotonic() < deadline:
        creating = client.model.get_creating_states("chatty")["result"]["states"]
        state_id = next((s["id"] for s in creating if s["name"] == "tag-7"), None)
        time.sleep(0.02)
    assert state_id is not None
    for line in client.model.get_state_logs("chatty", state_id, follow=True):
        seen.append((line, done.is_set()))
    creator.join(30)
    assert ids == [state_id]
    by_text = {line["text"]: ended for line, ended in seen}
    assert by_text["out 7"] is False  # delivered while the job still ran (3 s more)
    assert "late 7" in by_text
    assert seen[-1][0]["text"].startswith("outcome: success")


def test_follow_of_an_ended_job_gives_its_whole_log_and_ends(client: LauncherClient) -> None:
    state_id = run_chatty(client, 8)
    followed = list(client.model.get_state_logs("chatty", state_id, follow=True))
    assert followed == logs_of(client, state_id)["lines"]


def test_the_reason_of_each_invalid_executable_file_is_in_the_job_log(
    client: LauncherClient,
) -> None:
    for model_id, reason in (
        ("bad_toml", "model.toml is not valid TOML"),
        ("no_main", "main.py"),
    ):
        events = list(
            client.model.create_state_stream(
                model_id=model_id, name="x", params=[], execution_location=TEMPORARY, accepted=True
            )
        )
        assert events[0]["event"] == "accepted"
        failed = events[-1]["result"]["failed"]
        assert failed["error"] == {"code": "invalid_executable_file"}  # the seed's shape
        lines = logs_of(client, events[0]["stateId"], model_id)["lines"]
        last = texts(lines, "launcher")[-1]
        assert last.startswith("outcome: invalid_executable_file: "), last
        assert reason in last, last


def test_a_model_exception_is_in_the_outcome_line(client: LauncherClient) -> None:
    events = list(
        client.model.create_state_stream(
            model_id="chatty",
            name="fails",
            params=[param("tag", 5), param("mode", 3)],
            execution_location=TEMPORARY,
            accepted=True,
        )
    )
    assert events[0]["event"] == "accepted"
    assert events[-1]["result"]["failed"]["error"]["code"] == "exception"
    lines = logs_of(client, events[0]["stateId"])["lines"]
    assert "out 5" in texts(lines, "stdout")
    last = texts(lines, "launcher")[-1]
    assert last.startswith("outcome: exception (at=createState): RuntimeError: chatty 5 fails")


def test_bad_log_requests_are_refused_clearly(client: LauncherClient) -> None:
    state_id = run_chatty(client, 9)
    assert client.model.get_state_logs("no-such-model", state_id) == {
        "error": {"code": "model_not_found"}
    }
    assert client.model.get_state_logs("hello", state_id) == {"error": {"code": "state_not_found"}}
    for bad in ("../../etc/passwd", "s-" + "a" * 20, "", "s-" + "\x00" * 20, "x" * 5000):
        res = client.model.get_state_logs("chatty", bad)
        assert "error" in res, (bad, res)
        follow = list(client.model.get_state_logs("chatty", bad, follow=True))
        assert len(follow) == 1 and "error" in follow[0], (bad, follow)
    assert client.model.get_state_logs(None, state_id)["error"]["code"] == "invalid_parameter"  # type: ignore[arg-type]
    # nothing was lost: the good log is still whole
    assert texts(logs_of(client, state_id)["lines"], "stdout")[-1] == "out 9"


def test_logs_cli_prints_the_lines_and_follows(
    client: LauncherClient, launcher: LauncherProcess
) -> None:
    state_id = run_chatty(client, 12)
    base = [sys.executable, "-m", "launcher.cli", "--address", launcher.address, "logs"]
    out = subprocess.run(
        [*base, "chatty", state_id], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "stdout   out 12" in out and "stderr   err 12" in out
    assert "launcher outcome: success" in out
    followed = subprocess.run(
        [*base, "chatty", state_id, "--follow", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert '"text": "out 12"' in followed
    missing = subprocess.run(
        [*base, "chatty", "s-" + "b" * 20], capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 1 and "state_not_found" in missing.stdout


def test_another_tenants_job_log_is_refused() -> None:
    specs = {"alice": {"tenant": "a"}, "bob": {"tenant": "b"}}
    with launcher_with_keys(specs) as (proc, keys):
        with LauncherClient(proc.address, api_key=keys["alice"]) as alice:
            state_id = run_chatty(alice, 3)
            assert texts(logs_of(alice, state_id)["lines"], "stdout")[-1] == "out 3"
        with LauncherClient(proc.address, api_key=keys["bob"]) as bob:
            res = bob.model.get_state_logs("chatty", state_id)
            assert res["error"]["code"] == "access_denied", res
            follow = list(bob.model.get_state_logs("chatty", state_id, follow=True))
            assert follow[0]["error"]["code"] == "access_denied"
        with LauncherClient(proc.address) as nobody:
            assert nobody.model.get_state_logs("chatty", state_id) == {
                "error": {"code": "bad_credentials"}
            }
        # the operator log has one INFO line for the refused call
        refusals = [x for x in proc.log().splitlines() if "refused rpc: bad_credentials" in x]
        assert len(refusals) == 1 and " INFO launcher.requests: " in refusals[0], refusals


def test_create_state_cli_shows_the_id_at_once_and_follows_the_models_output(
    launcher: LauncherProcess,
) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "launcher.cli",
            "--address",
            launcher.address,
            "create-state",
            "chatty",
            "--name",
            "cli",
            "--param",
            "tag=21",
            "--follow-logs",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    assert out[0].startswith("accepted s-"), out
    assert "stdout: out 21" in out and "stderr: err 21" in out
    assert out.index("stdout: out 21") < len(out) - 1
    assert out[-1].startswith(f"state {out[0].split()[1]} created in ")


def test_many_followers_of_one_job_all_get_its_lines_and_others_are_served(
    client: LauncherClient, launcher: LauncherProcess
) -> None:
    events = client.model.create_state_stream(
        model_id="chatty",
        name="followed",
        params=[param("tag", 33), param("mode", 2)],
        execution_location=TEMPORARY,
        accepted=True,
    )
    state_id = next(events)["stateId"]
    results: list[list[str]] = []

    def follow() -> None:
        with LauncherClient(launcher.address) as own:
            lines = own.model.get_state_logs("chatty", state_id, follow=True)
            results.append([line["text"] for line in lines])

    followers = [threading.Thread(target=follow) for _ in range(40)]
    for thread in followers:
        thread.start()
    latencies = []
    with LauncherClient(launcher.address) as other:
        for _ in range(20):  # bounded: about 2 s
            start = time.monotonic()
            assert "result" in other.model.get_models()
            latencies.append(time.monotonic() - start)
            time.sleep(0.1)
    last = list(events)[-1]
    assert "success" in last["result"], last
    for thread in followers:
        thread.join(30)
    assert len(results) == 40
    for texts_seen in results:
        assert "out 33" in texts_seen and "late 33" in texts_seen
        assert texts_seen[-1].startswith("outcome: success")
    assert max(latencies) < 2.0, max(latencies)


def test_lines_printed_without_flush_reach_the_log_on_both_launcher_kinds(
    client: LauncherClient,
) -> None:
    made = client.persistent_launcher.create_persistent_launcher(
        name="unflushed", spec={"cpus": 1, "memoryMebibytes": 512}
    )
    persistent = {
        "type": "persistentLauncher",
        "persistentLauncherId": made["result"]["persistentLauncherId"],
    }
    try:
        for where in (TEMPORARY, persistent):
            res = client.model.create_state(
                model_id="unflushed", name="u", params=[], execution_location=where
            )
            state_id = res["result"]["success"]["stateId"]
            lines = logs_of(client, state_id, "unflushed")["lines"]
            assert texts(lines, "stdout") == [
                "unflushed: imported",
                "unflushed: stdout line",
                "unflushed: no newline at the end",
            ], where
            assert texts(lines, "stderr") == ["unflushed: stderr line"], where
    finally:
        client.persistent_launcher.delete_persistent_launcher(
            persistent_launcher_id=persistent["persistentLauncherId"]
        )
