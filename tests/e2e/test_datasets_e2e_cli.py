"""The dataset commands of the ``launcher`` command line against a real launcher: create a
dataset, add the rows of a .npy file, read them back, and feed the key to a createState job."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from tests.support.launcher_proc import PROJECT, LauncherProcess


def cli(launcher: LauncherProcess, *args: str) -> tuple[int, Any, str]:
    """Run ``python -m launcher.cli --address ... ARGS``: (exit code, printed JSON, stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "launcher.cli", "--address", launcher.address, *args],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        timeout=60,
    )
    printed = json.loads(done.stdout) if done.stdout.strip() else None
    return done.returncode, printed, done.stderr


def test_dataset_commands_create_add_read_and_feed_a_create_state_job(
    launcher: LauncherProcess, tmp_path: Path
) -> None:
    code, out, err = cli(
        launcher,
        "create-dataset",
        "vectors",
        "--description",
        "rows",
        "--key=x:required:types=f32:shape=-1",
    )
    assert code == 0, err
    dataset_id = out["result"]["datasetId"]

    rows = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "rows.npy", rows)
    code, out, err = cli(launcher, "add-entries", dataset_id, f"--key=x=@{tmp_path / 'rows.npy'}")
    assert code == 0, err
    assert out["result"]["datasetVersionId"]

    np.save(tmp_path / "wrong.npy", rows.astype(np.float64))
    code, out, _ = cli(launcher, "add-entries", dataset_id, f"--key=x=@{tmp_path / 'wrong.npy'}")
    assert code == 1 and out["error"]["code"] == "invalid_parameter", out

    code, out, err = cli(launcher, "get-entries", dataset_id, "--start", "1", "--end", "4")
    assert code == 0, err
    [key] = out["result"]["keys"]
    assert key["name"] == "x"
    assert [(e["index"], e["data"]) for e in key["data"]] == [
        (i, {"type": "f32", "shape": [3], "value": rows[i].tolist()}) for i in (1, 2, 3)
    ]

    code, out, err = cli(
        launcher,
        "create-state",
        "dataset_reader",
        "--name",
        "from the cli",
        "--param",
        f"x=dataset:{dataset_id}/x",
        "--temporary",
        "cpus=1,memory=512",
        "--json",
    )
    assert code == 0, (out, err)
    state_id = out["result"]["success"]["stateId"]
    code, out, err = cli(
        launcher, "get-model-state", "dataset_reader", "--state", state_id, "--out", str(tmp_path)
    )
    assert code == 0, err
    entries = json.loads((tmp_path / "entries").read_text())
    assert [e["values"] for e in entries] == rows.tolist()

    code, out, _ = cli(
        launcher,
        "create-state",
        "dataset_reader",
        "--name",
        "x",
        "--param",
        f"x=dataset:{dataset_id}/y",
        "--json",
    )
    assert code == 1
    assert out == {
        "error": {"code": "dataset_key_not_found", "datasetId": dataset_id, "datasetKey": "y"}
    }

    code, out, err = cli(launcher, "delete-dataset", dataset_id)
    assert (code, out) == (0, {"result": {}}), err
    code, out, _ = cli(launcher, "get-entries", dataset_id, "--indexes", "0")
    assert code == 1
    assert out == {"error": {"code": "dataset_not_found", "datasetId": dataset_id}}


def test_a_malformed_dataset_param_is_a_usage_error(launcher: LauncherProcess) -> None:
    code, out, err = cli(
        launcher, "create-state", "dataset_reader", "--name", "x", "--param", "x=dataset:only-an-id"
    )
    assert (code, out) == (2, None)
    assert "expected dataset:DATASET_ID/KEY" in err
