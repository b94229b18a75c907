"""A real launcher SIGKILLed at each fault point (``launcher.faults``) in the life of a createState
job, then restarted on the same root: acknowledged states intact (downloaded, hash-compared),
nothing of the lost job visible or on disk, no orphaned workers, and the lost job answering
``launcher_terminated`` (or success, complete, when the kill came after the commit)."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from launcher import faults
from launcher.client import LauncherClient, LauncherConnectionError
from tests.support.crash import (
    big_state_keys,
    big_state_params,
    digests,
    downloaded_digests,
    echo_keys,
    echo_params,
    files_under,
    state_ids,
    state_leftovers,
    wait_no_leftover_workers,
)
from tests.support.launcher_proc import LauncherProcess, running_launcher
from tests.support.specs import TEMPORARY

MIB = 1  # three 1 MiB keys: each one a file, not inline in the row
#: state id -> (model id, sha256 of each key)
Acked = dict[str, tuple[str, dict[str, str]]]


def _acknowledged(client: LauncherClient) -> Acked:
    """States created (success answered) before the crash."""
    done = {}
    payload = np.arange(50_000, dtype=np.int32)
    for model_id, params, keys in [
        ("big_state", big_state_params(MIB), big_state_keys(MIB)),
        ("echo", echo_params(payload), echo_keys(payload)),
    ]:
        res = client.model.create_state(
            model_id=model_id, name="acked", params=params, execution_location=TEMPORARY
        )
        state_id = res["result"]["success"]["stateId"]
        done[state_id] = (model_id, digests(keys))
    return done


def _run_until_killed(launcher: LauncherProcess) -> str | None:
    """Start a big_state job on the armed launcher; the state id it was given, if any."""
    state_id = None
    with LauncherClient(launcher.address) as client:
        with pytest.raises(LauncherConnectionError):
            for event in client.model.create_state_stream(
                model_id="big_state",
                name="doomed",
                params=big_state_params(MIB),
                execution_location=TEMPORARY,
            ):
                state_id = event.get("stateId", state_id)
                assert "event" in event, f"the armed job answered instead of dying: {event}"
    assert launcher.proc is not None
    assert launcher.proc.wait(30) == -signal.SIGKILL
    return state_id


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Acked]]:
    """A stopped launcher's root holding acknowledged states; each test runs on a copy."""
    root = Path(tmp_path_factory.mktemp("ct"))
    with running_launcher(root) as first, LauncherClient(first.address) as client:
        acked = _acknowledged(client)
    yield root, acked


@pytest.mark.parametrize("point", list(faults.POINTS))
def test_kill_at_fault_point_keeps_acknowledged_states_and_nothing_else(
    point: str,
    template: tuple[Path, Acked],
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = Path(tmp_path_factory.mktemp("cp"))
    shutil.copytree(template[0], root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.sock"))
    acked = template[1]

    monkeypatch.setenv(faults.ENV, point)
    armed = LauncherProcess(root)
    armed.start()
    lost = _run_until_killed(armed)
    monkeypatch.delenv(faults.ENV)

    if point == "upload_chunk":
        assert lost is None, "a job still uploading has no state id yet"
    else:
        assert lost is not None, "the job was accepted before this point"

    with running_launcher(root) as again, LauncherClient(again.address) as client:
        for state_id, (model_id, want) in acked.items():
            assert downloaded_digests(client, model_id, state_id) == want
        visible = state_ids(client, "big_state")
        acked_big = {s for s, (m, _) in acked.items() if m == "big_state"}
        if point == "after_commit":
            assert lost is not None
            answer = client.model.wait_for_state_to_be_created(model_id="big_state", state_id=lost)
            assert answer["result"]["success"]["stateId"] == lost
            assert visible == acked_big | {lost}
            assert downloaded_digests(client, "big_state", lost) == digests(big_state_keys(MIB))
        else:
            assert visible == acked_big
            if lost is not None:
                answer = client.model.wait_for_state_to_be_created(
                    model_id="big_state", state_id=lost
                )
                assert answer["result"]["failed"]["error"] == {"code": "launcher_terminated"}
                assert state_leftovers(root, lost) == []
        assert client.model.get_creating_states(model_id="big_state")["result"]["states"] == []
        assert files_under(root / "tmp") == [], "temporary files outlived the crash"
        assert wait_no_leftover_workers(root, armed.pid, again.pid) == []
        after = client.model.create_state(
            model_id="hello", name="after", params=[], execution_location=TEMPORARY
        )
        assert "success" in after["result"], after


def test_unknown_fault_point_refuses_to_start(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(faults.ENV, "no_such_point")
    launcher = LauncherProcess(Path(tmp_path_factory.mktemp("cu")))
    with pytest.raises(RuntimeError, match="exited"):
        launcher.start()
    assert "names no fault point" in launcher.log()


def test_killed_launcher_leaves_no_run_folder_behind(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = Path(tmp_path_factory.mktemp("cr"))
    private_tmp = Path(tmp_path_factory.mktemp("rt"))
    monkeypatch.setenv("TMPDIR", str(private_tmp))  # where the launcher's mkdtemp lands
    monkeypatch.setenv(faults.ENV, "create_state")
    armed = LauncherProcess(root)
    armed.start()
    _run_until_killed(armed)
    monkeypatch.delenv(faults.ENV)
    with running_launcher(root):
        pass
    assert [p.name for p in private_tmp.iterdir()] == []
