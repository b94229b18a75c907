"""The ``launcher`` command line: argument parsing, output formats and exit codes.

Calls go to ``FakeLauncher`` (tests/support/fake_server.py), a test double of the server on a
Unix socket answering canned responses; ``serve`` runs against a stand-in ``launcher.server``.
"""

from __future__ import annotations

import io
import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy
import pytest

from launcher.cli import args as parse
from launcher.cli import main
from launcher.cli.output import PhaseDisplay, jsonable
from launcher.config import ServeOptions
from launcher.v1 import common_pb2, dataset_pb2, model_pb2
from runtime import tensor
from tests.support.fake_server import FakeServer, success_events


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FakeServer]:
    fake = FakeServer(tmp_path)
    yield fake
    fake.stop()


def run(server: FakeServer, *argv: str) -> int:
    return main(["--address", server.address, *argv])


def test_create_state_json_prints_exactly_the_response(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(server, "create-state", "m", "--name", "n", "--json")
    expected = {
        "result": {
            "success": {
                "durations": {
                    "total": 210,
                    "createLauncher": 12,
                    "codeStartup": 100,
                    "createState": 50,
                },
                "stateId": "s-1",
            }
        }
    }
    assert code == 0
    assert capsys.readouterr().out == json.dumps(expected, indent=2) + "\n"


def test_create_state_sends_params_location_and_mounts(
    server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    array = numpy.arange(6, dtype=numpy.float32).reshape(2, 3)
    numpy.save(tmp_path / "x.npy", array)
    code = run(
        server,
        "create-state",
        "m",
        "--name",
        "n",
        "--param",
        f"x=@{tmp_path / 'x.npy'}",
        "--param",
        "x=[1, 2]",
        "--param",
        "d=dataset:ds-1/key",
        "--param",
        's="hi"',
        "--persistent",
        "p-1",
        "--mount",
        "other:s-9",
        "--json",
    )
    assert code == 0
    received = server.fake.last("CreateState")
    header = received["header"]
    assert [p.name for p in header.params] == ["x", "d", "s"]
    x = tensor.deserialize_many(bytes(received["data"][0]))
    assert x[0].numpy().tolist() == array.tolist() and x[1].type() == "i64"
    assert tensor.deserialize_many(bytes(received["data"][2]))[0].item() == "hi"
    assert header.params[1].dataset.dataset_key == "key"
    assert header.execution_location.persistent_launcher_id == "p-1"
    assert (header.mount_models[0].model_id, header.mount_models[0].state_id) == ("other", "s-9")


def test_create_state_defaults_to_a_temporary_launcher_of_one_cpu_and_1024_mib(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    run(server, "create-state", "m", "--name", "n", "--json")
    spec = server.fake.last("CreateState")["header"].execution_location.temporary_launcher_spec
    assert (spec.cpus, spec.memory_mebibytes) == (1.0, 1024)


def test_create_state_prints_plain_phase_lines_and_the_outcome_when_not_a_terminal(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(server, "create-state", "m", "--name", "n", "--temporary", "cpus=2,memory=64")
    assert code == 0
    assert capsys.readouterr().out.splitlines() == [
        "accepted s-1",  # at once: the id to wait for or read the logs of
        "createLauncher finished in 0.012 s",
        "codeStartup finished in 0.100 s",
        "createState finished in 0.050 s",
        "state s-1 created in 0.21 s",
    ]


def _failed_events() -> list[model_pb2.CreateStateEvent]:
    error = model_pb2.FailedError(code="exception", at="createState", exception_details="Boom\n")
    failed = model_pb2.CreateStateFailed(durations=model_pb2.Durations(total=1500), error=error)
    response = model_pb2.CreateStateResponse(result=model_pb2.CreateStateResult(failed=failed))
    return [*success_events()[:5], model_pb2.CreateStateEvent(response=response)]


def test_a_failed_outcome_exits_1_and_shows_its_code_and_details(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.fake.create_state_events = _failed_events()
    assert run(server, "create-state", "m", "--name", "n") == 1
    out = capsys.readouterr().out
    assert "state creation failed after 1.50 s: exception\n  at: createState\nBoom\n" in out
    assert run(server, "create-state", "m", "--name", "n", "--json") == 1
    assert json.loads(capsys.readouterr().out)["result"]["failed"]["error"]["code"] == "exception"


def test_the_phase_a_job_failed_in_is_shown_as_failed_not_finished(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.fake.create_state_events = _failed_events()
    assert run(server, "create-state", "m", "--name", "n") == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[:4] == [
        "accepted s-1",
        "createLauncher finished in 0.012 s",
        "codeStartup finished in 0.100 s",
        "createState failed",  # the phase its error names, not a finished one
    ]
    live = io.StringIO()
    display = PhaseDisplay(live, live=True)
    display.event({"event": "phaseStarted", "phase": "createState"})
    display.event({"event": "phaseFinished", "phase": "createState", "duration": 50})
    display.close(failed=True)
    assert live.getvalue().rstrip("\n").endswith("createState failed after 0.050 s")


def test_an_error_outcome_exits_1(server: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    error = common_pb2.Error(code="invalid_parameter", parameter_name="params[0]", reason="bad")
    response = model_pb2.CreateStateResponse(error=error)
    server.fake.create_state_events = [model_pb2.CreateStateEvent(response=response)]
    assert run(server, "create-state", "m", "--name", "n") == 1
    assert (
        capsys.readouterr().out
        == ("\nerror: invalid_parameter\n  parameterName: params[0]\n  reason: bad\n")[1:]
    )


def test_live_display_rewrites_one_line_with_phase_and_elapsed_time() -> None:
    out = io.StringIO()
    display = PhaseDisplay(out, live=True)
    display.event({"event": "phaseStarted", "phase": "codeStartup", "stateId": "s"})
    display.event(
        {"event": "phaseFinished", "phase": "codeStartup", "stateId": "s", "duration": 250}
    )
    display.close()
    text = out.getvalue()
    assert "\rcodeStartup 0.0 s ..." in text.replace("\x1b[2K", "")
    assert text.endswith("\r\x1b[2KcodeStartup 0.250 s\n")


def test_transport_failure_exits_3_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--address", f"unix:{tmp_path / 'none.sock'}", "create-state", "m", "--name", "n"])
    assert code == 3
    captured = capsys.readouterr()
    assert "UNAVAILABLE" in captured.err and captured.out == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["create-state", "m"],
        ["create-state", "m", "--name", "n", "--param", "x"],
        ["create-state", "m", "--name", "n", "--param", "x=@missing.npy"],
        ["create-state", "m", "--name", "n", "--param", "x=hello"],
        ["create-state", "m", "--name", "n", "--param", "x={}"],
        ["create-state", "m", "--name", "n", "--param", "x=dataset:only-id"],
        ["create-state", "m", "--name", "n", "--param", "x=1", "--param", "x=dataset:d/k"],
        ["create-state", "m", "--name", "n", "--temporary", "cpus=1"],
        ["create-state", "m", "--name", "n", "--temporary", "cpus=1,memory=lots"],
        ["create-state", "m", "--name", "n", "--temporary", "cpus=1,memory=1,ram=3"],
        ["create-state", "m", "--name", "n", "--temporary", "cpus=1,memory=1", "--persistent", "p"],
        ["create-dataset", "d", "--key", "x:shape=a"],
        ["create-dataset", "d", "--key", "x:optional"],
        # --start alone reads to the end (issue 16); --end with --indexes is refused
        ["get-entries", "d", "--indexes", "1", "--end", "3"],
        ["upload-state", "m", "--name", "n", "--key", "k=@/no/such/file"],
        ["get-model-state", "m", "--out", "/dev/null"],
        ["create-state", "m", "--name", "n", "--mount", "a:s@sn"],
        ["upload-state", "m", "--name", "n", "--key", "k=file"],
        ["serve", "--max-concurrent-jobs", "0"],
        ["serve", "--tls-cert", "c.pem"],
        ["no-such-command"],
    ],
)
def test_usage_errors_exit_2(
    server: FakeServer, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(server, *argv) == 2
    assert "error" in capsys.readouterr().err
    assert server.fake.received == []


def test_json_values_become_int64_float64_boolean_or_string_arrays() -> None:
    assert parse.json_tensor("[1, 2]").dtype == numpy.int64
    assert parse.json_tensor("1.5").dtype == numpy.float64
    assert parse.json_tensor("[true]").dtype == numpy.bool_
    assert parse.json_tensor('["a", "bc"]').tolist() == ["a", "bc"]


def test_launcher_specs_and_dataset_keys_parse_to_request_dicts() -> None:
    assert parse.launcher_spec("cpus=0.5,memory=512,disk=10,swap=0,gpus=h100:2") == {
        "cpus": 0.5,
        "memoryMebibytes": 512,
        "diskMebibytes": 10,
        "swapMebibytes": 0,
        "gpus": {"model": "h100", "count": 2},
    }
    assert parse.dataset_key("x:required:types=f32,f64:shape=-1,3") == {
        "name": "x",
        "required": True,
        "rules": {"allowedTypes": ["f32", "f64"], "shape": [-1, 3]},
    }


def test_serve_hands_its_options_to_run_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[ServeOptions] = []

    def run_server(options: ServeOptions) -> int:
        seen.append(options)
        return 7

    monkeypatch.setitem(
        sys.modules, "launcher.server", types.SimpleNamespace(run_server=run_server)
    )
    argv = ["serve", "--root", str(tmp_path), "--listen", "unix:a.sock", "--listen", "[::1]:9"]
    argv += ["--max-concurrent-jobs", "2", "--max-queued-jobs", "0", "--sandbox-disable", "net,uid"]
    argv += ["--allow-public", "--tls-cert", "c.pem", "--tls-key", "k.pem", "--log-level", "debug"]
    assert main(argv) == 7
    assert seen[0] == ServeOptions(
        root=tmp_path,
        listen=["unix:a.sock", "[::1]:9"],
        max_concurrent_jobs=2,
        max_queued_jobs=0,
        sandbox_disable=frozenset({"net", "uid"}),
        allow_public=True,
        tls_cert=Path("c.pem"),
        tls_key=Path("k.pem"),
        log_level="debug",
    )
    assert main(["serve"]) == 7
    assert seen[1] == ServeOptions(root=Path(".launcher-data"), listen=["127.0.0.1:50051"])


def test_api_key_and_address_default_to_the_environment(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LAUNCHER_ADDRESS", server.address)
    monkeypatch.setenv("LAUNCHER_API_KEY", "secret")
    assert main(["get-models"]) == 0
    assert server.fake.metadata[-1]["authorization"] == "Bearer secret"
    assert json.loads(capsys.readouterr().out) == {
        "result": {"models": [], "total": 0, "offset": 0, "limit": 0}
    }


def test_get_model_state_writes_keys_to_the_out_folder(
    server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.fake.state_chunks = [model_pb2.StateDataChunk(key="w", byte_size=2, data=b"hi")]
    assert run(server, "get-model-state", "m", "--out", str(tmp_path / "o"), "--keys", "w") == 0
    assert (tmp_path / "o" / "w").read_bytes() == b"hi"
    printed: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert printed["result"]["data"][0]["byteSize"] == 2


def test_upload_state_streams_the_named_files(
    server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "w.bin").write_bytes(b"weights")
    assert run(server, "upload-state", "m", "--name", "n", "--key", f"w=@{tmp_path / 'w.bin'}") == 0
    assert server.fake.last("UploadState")["data"] == b"weights"
    assert json.loads(capsys.readouterr().out) == {"result": {"stateId": "s-up"}}


def test_add_entries_sends_one_entry_per_row(
    server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = numpy.arange(6, dtype=numpy.int16).reshape(3, 2)
    numpy.save(tmp_path / "r.npy", rows)
    assert run(server, "add-entries", "d", "--key", f"x=@{tmp_path / 'r.npy'}") == 0
    received = server.fake.last("AddEntries")
    assert received["data"] == tensor.serialize_many(list(rows))
    assert json.loads(capsys.readouterr().out) == {"result": {"datasetVersionId": "v-2"}}


def test_get_entries_prints_tensors_as_json(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.fake.entry_chunks = [
        dataset_pb2.GetEntriesChunk(key="x", index=0, data=tensor.serialize(numpy.float32(1.5))),
        dataset_pb2.GetEntriesChunk(key="b", index=0, data=tensor.serialize(b"\x01")),
    ]
    assert run(server, "get-entries", "d", "--indexes", "0") == 0
    keys = json.loads(capsys.readouterr().out)["result"]["keys"]
    assert keys[0]["data"][0] == {"index": 0, "data": {"type": "f32", "shape": [], "value": 1.5}}
    assert keys[1]["data"][0]["data"]["value"] == "AQ=="


def test_an_error_result_of_a_subcommand_exits_1(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(server, "activate-state", "m", "s") == 1
    assert json.loads(capsys.readouterr().out) == {"error": {"code": "state_not_found"}}


def test_tensor_json_keeps_shape_and_encodes_bytes_and_media_as_base64() -> None:
    image = tensor.Tensor.from_values("image", [tensor.Media("png", b"xy")], (1,))
    strings = tensor.Tensor.from_values("string", ["a", "b", "c", "d"], (2, 2))
    assert jsonable({"i": image, "s": strings, "b": b"\xff"}) == {
        "i": {"type": "image", "shape": [1], "value": [{"format": "png", "data": "eHk="}]},
        "s": {"type": "string", "shape": [2, 2], "value": [["a", "b"], ["c", "d"]]},
        "b": "/w==",
    }
