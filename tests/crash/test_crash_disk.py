"""Disks that fail: a full disk (ENOSPC) during a job, and a committed key corrupted on disk.
Each fails the affected call cleanly and the launcher keeps serving."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.client import LauncherClient
from tests.support.crash import (
    big_state_keys,
    big_state_params,
    digests,
    downloaded_digests,
    files_under,
    state_ids,
)
from tests.support.launcher_proc import running_launcher
from tests.support.specs import TEMPORARY

TMPFS_MIB = 64


@pytest.fixture
def small_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 64 MiB tmpfs to use as the data root (needs the right to mount: root in most CIs)."""
    mount_point = Path(tmp_path_factory.mktemp("full"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MIB}m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill up: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_disk_full_during_a_job_fails_it_cleanly_and_the_next_job_succeeds(
    small_disk: Path,
) -> None:
    with running_launcher(small_disk) as launcher, LauncherClient(launcher.address) as client:
        # Three keys of 40 MiB: the second one cannot fit in 64 MiB.
        res = client.model.create_state(
            model_id="big_state",
            name="too big",
            params=big_state_params(40),
            execution_location=TEMPORARY,
        )
        failed = res["result"]["failed"]
        assert failed["error"]["code"] == "unknown", failed
        assert re.search(r"log id \w+", failed["error"].get("reason", "")), failed
        assert state_ids(client, "big_state") == set()
        assert files_under(small_disk / "states") == []
        assert files_under(small_disk / "tmp") == []

        res = client.model.create_state(
            model_id="big_state",
            name="fits",
            params=big_state_params(1),
            execution_location=TEMPORARY,
        )
        state_id = res["result"]["success"]["stateId"]
        assert downloaded_digests(client, "big_state", state_id) == digests(big_state_keys(1))


def test_corrupt_key_is_an_unknown_error_on_download_never_good_looking_data(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = Path(tmp_path_factory.mktemp("bad"))
    with running_launcher(root) as launcher, LauncherClient(launcher.address) as client:
        res = client.model.create_state(
            model_id="big_state", name="x", params=big_state_params(1), execution_location=TEMPORARY
        )
        state_id = res["result"]["success"]["stateId"]
        (blob, *_) = sorted((root / "states" / state_id).iterdir())
        with open(blob, "r+b") as f:  # one bit flipped in the middle: same size, wrong hash
            f.seek(1 << 19)
            byte = f.read(1)
            f.seek(1 << 19)
            f.write(bytes([byte[0] ^ 1]))

        answer = client.model.get_model_state(model_id="big_state", state_id=state_id)
        assert answer["error"]["code"] == "unknown", answer
        log_id = re.search(r"log id (\w+)", answer["error"]["reason"])
        assert log_id is not None and log_id.group(1) in launcher.log()

        into = root.parent / f"{root.name}-download"
        answer = client.model.download_state(model_id="big_state", state_id=state_id, to_dir=into)
        assert answer["error"]["code"] == "unknown", answer
        assert files_under(into) == [], "a corrupt download left files behind"

        # The other keys and the launcher are fine.
        good = client.model.get_model_state(model_id="big_state", state_id=state_id, keys=["c"])
        assert good["result"]["data"][0]["data"] == big_state_keys(1)["c"]
