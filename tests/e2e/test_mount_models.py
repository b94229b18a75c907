"""mountModels end to end over a real socket: the other model's folder at ``mount_path``
(read-only) and its state through ``options.other_models`` (default active, by stateId)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from launcher.client import LauncherClient
from tests.support.launcher_proc import LauncherProcess
from tests.support.mounting import new_model, probe, refused, upload
from tests.support.specs import TEMPORARY


def test_mounted_folder_is_readable_and_write_is_refused(
    launcher: LauncherProcess, client: LauncherClient
) -> None:
    other = new_model(launcher, "model = {'createModelState': None}\n")
    upload(client, other, k=b"v")
    seen = probe(client, [{"modelId": other}])
    assert json.loads(seen[f"{other}/files"]) == ["main.py", "weights.bin"]
    assert seen[f"{other}/main.py"] == b"model = {'createModelState': None}\n"
    assert seen[f"{other}/write"].startswith(b"refused")
    assert not (launcher.root / "models" / other / "written-by-a-mounter").exists()


def test_default_mount_reads_the_active_state(
    launcher: LauncherProcess, client: LauncherClient
) -> None:
    other = new_model(launcher)
    first = upload(client, other, a=b"first")
    second = upload(client, other, a=b"second", b=b"")
    assert (
        client.model.get_models(filter={"ids": [other]})["result"]["models"][0]["activeState"]
        == first
    )
    seen = probe(client, [{"modelId": other}])
    assert seen[f"{other}/state/a"] == b"first" and f"{other}/state/b" not in seen
    client.model.set_active_model_state(model_id=other, state_id=second)
    seen = probe(client, [{"modelId": other}])
    assert seen[f"{other}/state/a"] == b"second" and seen[f"{other}/state/b"] == b""


def test_mount_by_state_id_reads_that_state(
    launcher: LauncherProcess, client: LauncherClient
) -> None:
    other = new_model(launcher)
    upload(client, other, a=b"active")
    chosen = upload(client, other, a=b"chosen", big=np.arange(70_000, dtype="<u4").tobytes())
    seen = probe(client, [{"modelId": other, "stateId": chosen}])
    assert seen[f"{other}/state/a"] == b"chosen"
    assert seen[f"{other}/state/big"] == np.arange(70_000, dtype="<u4").tobytes()


def test_the_new_state_lists_what_was_mounted(
    launcher: LauncherProcess, client: LauncherClient
) -> None:
    other = new_model(launcher)
    upload(client, other, a=b"1")
    res = client.model.create_state(
        model_id="mount_probe",
        name="listed",
        params=[],
        execution_location=TEMPORARY,
        mount_models=[{"modelId": other}],
    )
    state_id = res["result"]["success"]["stateId"]
    model = client.model.get_models(filter={"ids": ["mount_probe"]})["result"]["models"][0]
    state = next(s for s in model["states"] if s["id"] == state_id)
    assert state["mountedModels"] == [{"modelId": other}]


def test_two_models_mounted_at_once(launcher: LauncherProcess, client: LauncherClient) -> None:
    a, b = new_model(launcher), new_model(launcher)
    upload(client, a, k=b"from a")
    upload(client, b, k=b"from b")
    seen = probe(client, [{"modelId": a}, {"modelId": b}])
    assert seen[f"{a}/state/k"] == b"from a" and seen[f"{b}/state/k"] == b"from b"
    assert seen[f"{a}/path"] != seen[f"{b}/path"]


def test_unknown_model_to_mount(client: LauncherClient) -> None:
    assert refused(client, [{"modelId": "no-such-model"}]) == {"code": "model_to_mount_not_found"}


def test_unknown_state_to_mount(launcher: LauncherProcess, client: LauncherClient) -> None:
    other = new_model(launcher)
    upload(client, other, a=b"1")
    error = refused(client, [{"modelId": other, "stateId": "s-doesnotexist"}])
    assert error == {"code": "state_for_model_to_mount_not_found"}


def test_state_of_another_model_is_not_found(
    launcher: LauncherProcess, client: LauncherClient
) -> None:
    a, b = new_model(launcher), new_model(launcher)
    state_of_a = upload(client, a, k=b"1")
    error = refused(client, [{"modelId": b, "stateId": state_of_a}])
    assert error == {"code": "state_for_model_to_mount_not_found"}


def test_model_without_active_state_cannot_be_mounted(
    launcher: LauncherProcess, client: LauncherClient
) -> None:
    error = refused(client, [{"modelId": new_model(launcher)}])
    assert error == {"code": "state_for_model_to_mount_not_found"}


def test_unknown_snapshot_to_mount(launcher: LauncherProcess, client: LauncherClient) -> None:
    other = new_model(launcher)
    error = refused(client, [{"modelId": other, "snapshotId": "sn-doesnotexist"}])
    assert error == {"code": "snapshot_for_model_to_mount_not_found"}


@pytest.mark.parametrize(
    ("mount", "parameter"),
    [
        ({"modelId": "x", "stateId": "s-1", "snapshotId": "sn-1"}, "mountModels[0]"),
        ({"modelId": "x", "stateId": "../etc"}, "mountModels[0].stateId"),
        ({"modelId": "x", "snapshotId": ""}, "mountModels[0].snapshotId"),
        ({"modelId": "../x"}, "mountModels[0].modelId"),
        ({"modelId": "mount_probe"}, "mountModels[0].modelId"),
    ],
)
def test_malformed_mounts_are_invalid_parameters(
    client: LauncherClient, mount: dict[str, str], parameter: str
) -> None:
    error = refused(client, [mount])
    assert error["code"] == "invalid_parameter"
    assert error["parameterName"] == parameter
    assert error["reason"]


def test_too_many_mounts_are_refused(client: LauncherClient) -> None:
    error = refused(client, [{"modelId": f"m{i}"} for i in range(17)])
    assert error["code"] == "invalid_parameter" and error["parameterName"] == "mountModels"
