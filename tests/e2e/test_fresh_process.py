"""``fresh_process = true`` in model.toml: the worker is exec'd, not forked from the zygote."""

from __future__ import annotations

import shutil

from launcher.client import LauncherClient
from tests.support.launcher_proc import LauncherProcess
from tests.support.specs import TEMPORARY


def preloaded(client: LauncherClient, model_id: str) -> bytes:
    res = client.model.create_state(
        model_id=model_id, name="p", params=[], execution_location=TEMPORARY
    )
    state_id = res["result"]["success"]["stateId"]
    data = client.model.get_model_state(model_id=model_id, state_id=state_id)
    return data["result"]["data"][0]["data"]


def test_fresh_process_model_gets_a_new_interpreter(
    client: LauncherClient, launcher: LauncherProcess
) -> None:
    assert preloaded(client, "fresh_probe") == b"False"
    assert "fresh_probe: worker started as a fresh process" in launcher.log()


def test_other_models_are_forked_from_the_warm_zygote(
    client: LauncherClient, launcher: LauncherProcess
) -> None:
    forked = launcher.root / "models" / "forked_probe"
    if not forked.exists():
        shutil.copytree(launcher.root / "models" / "fresh_probe", forked)
        (forked / "model.toml").unlink()
    assert preloaded(client, "forked_probe") == b"True"
