"""Hostile model folders (issue 12 item 3): a FIFO or /dev/zero model.toml, a 33 MB one, a
folder of 30,000 files, folders that resolve outside models/. Each is refused (or served)
without taking the launcher away from other clients, and SIGTERM still stops it."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.client import LauncherClient
from tests.support.bounds import (
    CHEAP_CALL_BOUND,
    LatencyProbe,
    cheap_call_seconds,
    create,
    error_of,
    failed_code,
    make_model,
)
from tests.support.launcher_proc import LauncherProcess, running_launcher


@pytest.fixture(scope="module")
def served() -> Iterator[LauncherProcess]:
    with tempfile.TemporaryDirectory(prefix="lb-") as root:
        with running_launcher(Path(root), ["--max-concurrent-jobs", "2"]) as proc:
            yield proc


@pytest.fixture
def client(served: LauncherProcess) -> Iterator[LauncherClient]:
    with LauncherClient(served.address) as c:
        yield c


def _others_are_served(served: LauncherProcess, client: LauncherClient) -> None:
    assert cheap_call_seconds(served.address) < CHEAP_CALL_BOUND
    res = create(client, "hello")
    assert "success" in res["result"], res


def test_fifo_model_toml_is_refused_and_does_not_wedge_the_daemon() -> None:
    with tempfile.TemporaryDirectory(prefix="lf-") as root_name:
        root = Path(root_name)
        with running_launcher(root) as proc:
            folder = make_model(root, "fifo")
            os.mkfifo(folder / "model.toml")
            with LauncherClient(proc.address) as client:
                # More calls than any thread pool the launcher has: none may stay blocked.
                results: list[str] = []

                def call() -> None:
                    results.append(failed_code(create(client, "fifo")))

                with LatencyProbe(proc.address) as probe:
                    threads = [threading.Thread(target=call) for _ in range(12)]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join(60)
                    listed = client.model.get_models(filter={"ids": ["fifo"]})
                assert results == ["invalid_executable_file"] * 12
                assert [m["id"] for m in listed["result"]["models"]] == ["fifo"]
                assert not probe.errors and probe.worst < CHEAP_CALL_BOUND, probe.samples
                _others_are_served(proc, client)
            assert "model.toml is not a regular file" in proc.log()
            # SIGTERM still stops it, promptly and cleanly.
            assert proc.stop(timeout=30) == 0


def test_model_toml_linked_to_dev_zero_is_refused(
    served: LauncherProcess, client: LauncherClient
) -> None:
    folder = make_model(served.root, "zero")
    os.symlink("/dev/zero", folder / "model.toml")
    assert failed_code(create(client, "zero")) == "invalid_executable_file"
    assert "model.toml is a symbolic link" in served.log()
    # ... logged with the state id of the job that failed.
    state_ids = [line for line in served.log().splitlines() if "InvalidExecutableFile" in line]
    assert any("state s-" in line and "zero" in line for line in state_ids), state_ids
    _others_are_served(served, client)


def test_main_py_that_is_a_fifo_is_refused(served: LauncherProcess, client: LauncherClient) -> None:
    folder = served.root / "models" / "fifo-main"
    folder.mkdir()
    os.mkfifo(folder / "main.py")
    assert failed_code(create(client, "fifo-main")) == "invalid_executable_file"
    assert "main.py is not a regular file" in served.log()
    _others_are_served(served, client)


def test_huge_model_toml_is_refused_without_reading_it(
    served: LauncherProcess, client: LauncherClient
) -> None:
    folder = make_model(served.root, "huge-toml")
    with open(folder / "model.toml", "wb") as f:
        f.write(b'name = "x"\n' + b"#" * (33 << 20) + b"\n")
    assert failed_code(create(client, "huge-toml")) == "invalid_executable_file"
    assert "model.toml is 34603020 bytes; at most 65536" in served.log()
    for _ in range(5):  # listing it stays cheap: it is neither read nor parsed
        assert cheap_call_seconds(served.address) < CHEAP_CALL_BOUND
    listed = client.model.get_models(filter={"ids": ["huge-toml"]})["result"]["models"]
    assert [m["id"] for m in listed] == ["huge-toml"]
    _others_are_served(served, client)


def test_folder_of_30000_files_is_served_and_listing_stays_cheap(
    served: LauncherProcess, client: LauncherClient
) -> None:
    folder = make_model(served.root, "many-files")
    data = folder / "data"
    data.mkdir()
    for i in range(30_000):
        (data / f"f{i}").touch()
    first = create(client, "many-files")
    assert "success" in first["result"], first
    for _ in range(3):
        assert cheap_call_seconds(served.address) < CHEAP_CALL_BOUND
    again = create(client, "many-files")
    assert "success" in again["result"], again
    # Resolving the folder is part of the job: total covers it and every phase.
    durations = again["result"]["success"]["durations"]
    assert durations["total"] >= durations["createLauncher"] + durations["createState"]
    _others_are_served(served, client)


def test_model_folder_resolving_outside_models_is_invalid_executable_file(
    served: LauncherProcess, client: LauncherClient, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "main.py").write_text("model = {'createModelState': lambda o: None}\n")
    os.symlink(outside, served.root / "models" / "escape")
    assert failed_code(create(client, "escape")) == "invalid_executable_file"
    assert "resolves outside models/" in served.log()
    # Mounting it is refused too: its files are never bound into a sandbox.
    res = create(client, "hello", mount_models=[{"modelId": "escape"}])
    assert error_of(res) == {"code": "model_to_mount_not_found"}
    _others_are_served(served, client)


def test_unservable_folder_name_is_logged(served: LauncherProcess, client: LauncherClient) -> None:
    make_model(served.root, "bad name")
    listed = client.model.get_models()["result"]["models"]
    assert "bad name" not in [m["id"] for m in listed]
    assert "models/'bad name' is not served" in served.log()
