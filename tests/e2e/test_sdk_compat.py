"""Models written for the official SDK run unchanged here, with the same results as on the
official runtime: the same model folders in both styles run under ``runtime = "python"`` and
``runtime = "decthings-model"`` and store identical state bytes, for every tensor type the
platform's client (decthings-api 0.0.4) encodes in the platform's format: f32..u64, boolean
and string. (Its binary, image, audio and video encodings are broken or use an older layout —
known bugs of 0.0.4; this runtime's codec tests cover those types.)"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from decthings_api import DecthingsTensor

from launcher.client import LauncherClient
from tests.support.launcher_proc import LauncherProcess
from tests.support.specs import TEMPORARY

NUMERIC = ["f32", "f64", "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64"]


def _params() -> list[dict]:
    """Two tensors of each type, serialized by the platform's own client."""
    params = []
    for dtype in NUMERIC:
        np_type = np.dtype(
            {"f32": "<f4", "f64": "<f8"}.get(dtype, dtype.replace("i", "int").replace("u", "uint"))
        )
        grid = np.arange(6).astype(np_type).reshape(2, 3)
        scalar = np.array(7, dtype=np_type)
        tensors = [DecthingsTensor(grid, dtype, [2, 3]), DecthingsTensor(scalar, dtype, [])]
        params.append((dtype, tensors))
    params.append(
        (
            "boolean",
            [
                DecthingsTensor([True, False, True], "boolean", [3]),
                DecthingsTensor([False], "boolean", [1]),
            ],
        )
    )
    params.append(
        (
            "string",
            [DecthingsTensor(["héllo", ""], "string", [2]), DecthingsTensor(["x"], "string", [])],
        )
    )
    return [
        {"name": f"p_{name}", "data": [tensor.serialize() for tensor in tensors]}
        for name, tensors in params
    ]


def _state_under(
    client: LauncherClient, launcher: LauncherProcess, source: str, runtime: str
) -> dict[str, bytes]:
    model_id = f"{source}_{runtime.replace('-', '_')}"
    folder = launcher.root / "models" / model_id
    if not folder.exists():
        shutil.copytree(launcher.root / "models" / source, folder)
        (folder / "model.toml").write_text(f'runtime = "{runtime}"\n')
    res = client.model.create_state(
        model_id=model_id, name="compat", params=_params(), execution_location=TEMPORARY
    )
    assert "success" in res.get("result", {}), res
    state_id = res["result"]["success"]["stateId"]
    data = client.model.get_model_state(model_id=model_id, state_id=state_id)["result"]["data"]
    return {item["key"]: item["data"] for item in data}


@pytest.mark.parametrize("source", ["sdk_plain", "sdk_make_model"])
def test_the_same_model_stores_identical_bytes_under_both_runtimes(
    client: LauncherClient, launcher: LauncherProcess, source: str
) -> None:
    ours = _state_under(client, launcher, source, "python")
    official = _state_under(client, launcher, source, "decthings-model")
    assert ours == official
    sent = {p["name"]: b"".join(p["data"]) for p in _params()}
    assert {key: ours[key] for key in sent} == sent
    report = json.loads(ours["report"])
    if source == "sdk_plain":
        assert all(entry["same"] and entry["count"] == 2 for entry in report.values())
    else:
        assert report["p_f32"] == [["f32", [2, 3]], ["f32", []]]
        assert report["p_string"] == [["string", [2]], ["string", []]]
