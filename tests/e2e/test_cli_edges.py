"""The command line's rough edges, each against a real launcher through a real ``launcher``
process: mount forms, gpus=[MODEL:]N, get-entries to the end, local file problems as clean
usage errors (exit 2, no traceback, nothing sent), upload-state refusing to delete the active
state, one default root, defaults in every --help, --version."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from launcher.cli import args as parse
from launcher.cli import build_parser
from launcher.client import LauncherClient
from tests.support.launcher_proc import PROJECT, LauncherProcess, running_launcher
from tests.support.specs import TEMPORARY


def cli(address: str, *args: str, cwd: Path = PROJECT) -> tuple[int, Any, str]:
    """Run ``python -m launcher.cli --address ADDRESS ARGS``: (exit code, JSON out, stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "launcher.cli", "--address", address, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )
    try:
        printed = json.loads(done.stdout) if done.stdout.strip() else None
    except json.JSONDecodeError:
        printed = done.stdout
    return done.returncode, printed, done.stderr


def assert_usage_error(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err and "Exception iterating" not in err, err
    for word in words:
        assert word in err, err


# ---- --mount MODEL, MODEL:STATE, MODEL@SNAPSHOT ----


@pytest.mark.parametrize(
    ("text", "mount"),
    [
        ("m", {"modelId": "m"}),
        ("m:s-1", {"modelId": "m", "stateId": "s-1"}),
        ("m@sn-1", {"modelId": "m", "snapshotId": "sn-1"}),
    ],
)
def test_mount_forms(text: str, mount: dict[str, str]) -> None:
    assert parse.mount(text) == mount


@pytest.mark.parametrize("text", ["", ":s", "@sn", "m:", "m@", "m:s@sn", "m@sn:s"])
def test_bad_mounts_are_usage_errors(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="MODEL@SNAPSHOT"):
        parse.mount(text)


def test_mount_by_state_and_by_snapshot_reach_the_launcher(launcher: LauncherProcess) -> None:
    with LauncherClient(launcher.address) as client:
        made = client.model.create_state(
            model_id="hello", name="to-mount", params=[], execution_location=TEMPORARY
        )
    state_id = made["result"]["success"]["stateId"]
    code, out, err = cli(
        launcher.address, "create-state", "mount_probe", "--name", "by-state", "--json",
        "--mount", f"hello:{state_id}",
    )  # fmt: skip
    assert code == 0 and "success" in out["result"], (out, err)
    code, out, err = cli(
        launcher.address, "create-state", "mount_probe", "--name", "by-snapshot", "--json",
        "--mount", "hello@sn-doesnotexist",
    )  # fmt: skip
    assert code == 1 and out == {"error": {"code": "snapshot_for_model_to_mount_not_found"}}, err


# ---- gpus=[MODEL:]N ----


@pytest.fixture(scope="module")
def gpu_launcher() -> Iterator[LauncherProcess]:
    with tempfile.TemporaryDirectory(prefix="lg-") as root:
        with running_launcher(Path(root), ["--fake-gpus", "0:NVIDIA H100,1:NVIDIA A100"]) as p:
            yield p


def _gpus_seen(address: str, state_id: str) -> str:
    with LauncherClient(address) as client:
        state = client.model.get_model_state(model_id="gpu_env", state_id=state_id)
    return bytes(state["result"]["data"][0]["data"]).decode()


@pytest.mark.parametrize(("gpus", "seen"), [("2", "0,1"), ("A100:1", "1"), ("h100:1", "0")])
def test_temporary_gpus_with_or_without_a_model(
    gpu_launcher: LauncherProcess, gpus: str, seen: str
) -> None:
    code, out, err = cli(
        gpu_launcher.address, "create-state", "gpu_env", "--name", "g", "--json",
        "--temporary", f"cpus=1,memory=256,gpus={gpus}",
    )  # fmt: skip
    assert code == 0, (out, err)
    assert _gpus_seen(gpu_launcher.address, out["result"]["success"]["stateId"]) == seen


def test_more_gpus_of_any_model_than_exist_is_invalid_parameter(
    gpu_launcher: LauncherProcess,
) -> None:
    code, out, _ = cli(
        gpu_launcher.address, "create-state", "gpu_env", "--name", "g", "--json",
        "--temporary", "cpus=1,memory=256,gpus=3",
    )  # fmt: skip
    assert code == 1 and out["error"]["code"] == "invalid_parameter"
    assert out["error"]["parameterName"] == "executionLocation.spec.gpus"
    assert "3 GPU(s) of any model" in out["error"]["reason"]


def test_a_persistent_launcher_with_gpus_of_any_model(gpu_launcher: LauncherProcess) -> None:
    code, out, err = cli(
        gpu_launcher.address, "create-persistent-launcher", "p", "cpus=1,memory=256,gpus=1"
    )
    assert code == 0, (out, err)
    launcher_id = out["result"]["persistentLauncherId"]
    code, out, err = cli(
        gpu_launcher.address, "create-state", "gpu_env", "--name", "g", "--json",
        "--persistent", launcher_id,
    )  # fmt: skip
    assert code == 0, (out, err)
    assert _gpus_seen(gpu_launcher.address, out["result"]["success"]["stateId"]) in ("0", "1")
    with LauncherClient(gpu_launcher.address) as client:
        listed = client.persistent_launcher.get_persistent_launchers(filter={"ids": [launcher_id]})
        [info] = listed["result"]["persistentLaunchers"]
        assert info["spec"]["gpus"] == {"model": "", "count": 1}
        client.persistent_launcher.delete_persistent_launcher(persistent_launcher_id=launcher_id)


# ---- get-entries --start without --end ----


def test_get_entries_from_start_to_the_end(launcher: LauncherProcess) -> None:
    with LauncherClient(launcher.address) as client:
        made = client.dataset.create_dataset(
            name="five", description="", keys=[{"name": "x", "required": True, "rules": {}}]
        )
        dataset_id = made["result"]["datasetId"]
        rows = [np.array([i], dtype=np.int32) for i in range(5)]
        assert "result" in client.dataset.add_entries(
            dataset_id=dataset_id, keys=[{"key": "x", "data": rows}]
        )
    code, out, err = cli(launcher.address, "get-entries", dataset_id, "--start", "2")
    assert code == 0, err
    [key] = out["result"]["keys"]
    assert [item["index"] for item in key["data"]] == [2, 3, 4]
    code, out, err = cli(launcher.address, "get-entries", dataset_id, "--start", "5")
    assert code == 0 and all(k["data"] == [] for k in out["result"]["keys"]), (out, err)
    code, out, err = cli(launcher.address, "get-entries", dataset_id, "--start", "7")
    assert code == 1 and out["error"]["code"] == "invalid_parameter", (out, err)
    code, out, _ = cli(launcher.address, "get-entries", "d-unknown", "--start", "0")
    assert code == 1 and out["error"]["code"] in ("dataset_not_found", "invalid_parameter")


# ---- local file problems: exit 2, a clean message, nothing sent ----


def test_get_model_state_onto_an_existing_file(launcher: LauncherProcess, tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_bytes(b"mine")
    code, _, err = cli(launcher.address, "get-model-state", "hello", "--out", str(target))
    assert_usage_error(code, err, "not a folder", str(target))
    assert target.read_bytes() == b"mine"


def _states(address: str, model_id: str) -> list[str]:
    with LauncherClient(address) as client:
        listed = client.model.get_models(filter={"ids": [model_id]})
    return [s["id"] for s in listed["result"]["models"][0]["states"]]


@pytest.mark.parametrize("kind", ["folder", "missing"])
def test_upload_state_from_a_path_that_is_not_a_file(
    launcher: LauncherProcess, tmp_path: Path, kind: str
) -> None:
    path = tmp_path if kind == "folder" else tmp_path / "nothing-here"
    before = _states(launcher.address, "echo")
    code, _, err = cli(
        launcher.address, "upload-state", "echo", "--name", "u", "--key", f"a=@{path}"
    )
    assert_usage_error(code, err, str(path), "not a regular file")
    assert _states(launcher.address, "echo") == before


def test_a_param_from_a_folder_is_a_usage_error(launcher: LauncherProcess, tmp_path: Path) -> None:
    code, _, err = cli(
        launcher.address, "create-state", "echo", "--name", "p", "--param", f"x=@{tmp_path}"
    )
    assert_usage_error(code, err, str(tmp_path))


def test_an_unreadable_download_folder_is_a_usage_error(launcher: LauncherProcess) -> None:
    code, _, err = cli(launcher.address, "get-model-state", "hello", "--out", "/proc/1/nope")
    assert_usage_error(code, err)


# ---- upload-state --delete-states refuses the active state ----


def test_upload_state_deleting_the_active_state_is_refused_and_changes_nothing(
    launcher: LauncherProcess, tmp_path: Path
) -> None:
    with LauncherClient(launcher.address) as client:
        made = client.model.create_state(
            model_id="counter", name="first", params=[], execution_location=TEMPORARY
        )
        assert "success" in made["result"], made
        active = client.model.get_models(filter={"ids": ["counter"]})["result"]["models"][0][
            "activeState"
        ]
    before = _states(launcher.address, "counter")
    data = tmp_path / "k.bin"
    data.write_bytes(b"new")
    code, out, err = cli(
        launcher.address, "upload-state", "counter", "--name", "second",
        "--key", f"k=@{data}", "--delete-states", active,
    )  # fmt: skip
    assert code == 1 and out == {"error": {"code": "state_is_active"}}, (out, err)
    assert _states(launcher.address, "counter") == before
    # Deleting another (inactive) state along an upload still works.
    code, out, err = cli(launcher.address, "upload-state", "counter", "--name", "x", "--key",
                         f"k=@{data}")  # fmt: skip
    assert code == 0, err
    extra = out["result"]["stateId"]
    code, out, err = cli(
        launcher.address, "upload-state", "counter", "--name", "y",
        "--key", f"k=@{data}", "--delete-states", extra,
    )  # fmt: skip
    assert code == 0, err
    after = _states(launcher.address, "counter")
    assert extra not in after and out["result"]["stateId"] in after and active in after


# ---- one default root, defaults in --help, --version ----


def test_every_subcommand_defaults_to_the_root_make_run_uses() -> None:
    parser = build_parser()
    for argv in (["serve"], ["keys", "list"], ["keys", "create", "k"], ["keys", "revoke", "x"]):
        assert parser.parse_args(argv).root == Path(".launcher-data"), argv


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_every_help_shows_every_default() -> None:
    for parser in _parsers(build_parser()):
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            if not action.option_strings or action.nargs == 0 or action.default in ([], ""):
                continue
            if action.dest in ("address", "api_key"):  # from the environment, named in help
                continue
            shown = "none" if action.default is None else str(action.default)
            # Shown by the formatter, or named in the option's own help text.
            assert f"default: {shown}" in text or "default" in (action.help or ""), (
                parser.prog,
                action.option_strings,
            )


def test_serve_help_shows_the_work_limits_and_tls_defaults() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "launcher.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        timeout=60,
    )
    text = " ".join(done.stdout.split())
    assert done.returncode == 0
    for option, default in (
        ("--max-concurrent-jobs N", "4"),
        ("--max-queued-jobs M", "64"),
        ("--drain-seconds S", "30.0"),
        ("--tls-cert PEM", "none"),
        ("--root ROOT", ".launcher-data"),
    ):
        start = text.index(option, text.index("options:"))
        assert f"default: {default}" in text[start : start + 400], option


def test_version() -> None:
    for argv in (["launcher.cli", "--version"], ["launcher", "--version"]):
        done = subprocess.run(
            [sys.executable, "-m", *argv], capture_output=True, text=True, cwd=PROJECT, timeout=60
        )
        assert done.returncode == 0 and done.stdout.startswith("launcher 0."), done


def test_a_missing_tls_file_is_a_usage_error(launcher: LauncherProcess) -> None:
    code, _, err = cli(launcher.address, "--tls-ca", "/no/such/ca.pem", "get-models")
    assert_usage_error(code, err, "/no/such/ca.pem")
