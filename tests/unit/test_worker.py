"""End-to-end tests of `python -m runtime` driven by tests/host.py over a real Unix socket."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from runtime import tensor
from tests.support.host import Host

MODELS = Path(__file__).parent.parent / "models" / "worker"


@pytest.fixture
def host(tmp_path: Path):
    h = Host(tmp_path)
    yield h
    if h.process.poll() is None:
        h.close()


def run_model(host: Host, name: str, params: dict[str, list[bytes]] | None = None):
    assert host.initialize(MODELS / name / "main.py") == {}
    return host.create_state(params or {})


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sync_object", {"kind": b"sync object"}),
        ("async_class", {"kind": b"async class instance"}),
        ("dict_model", {"kind": b"dict", "second": b"2"}),
    ],
)
def test_model_forms_provide_their_keys(host: Host, name: str, expected: dict[str, bytes]) -> None:
    outcome = run_model(host, name)
    assert outcome.result == {}
    assert outcome.state == expected
    assert host.close() == 0


def test_import_exception_reports_the_models_traceback(host: Host) -> None:
    answer = host.initialize(MODELS / "import_error" / "main.py")
    details = answer["error"]["details"]
    assert answer["error"]["code"] == "exception"
    assert 'raise ValueError("boom at import")' in details
    assert "ValueError: boom at import" in details
    assert "runtime/" not in details.split("\n")[1]  # starts at the model's frame


def test_exception_inside_create_model_state_is_an_exception_result(host: Host) -> None:
    outcome = run_model(host, "raises")
    assert outcome.error is not None and outcome.error["code"] == "exception"
    assert 'raise RuntimeError("boom inside createModelState")' in outcome.error["details"]
    assert outcome.state == {"partial": b"x"}


def test_missing_model_variable_is_a_clear_startup_error(host: Host) -> None:
    answer = host.initialize(MODELS / "no_model" / "main.py")
    assert "defines no module-level variable `model`" in answer["error"]["details"]


def test_model_without_create_model_state_is_a_clear_error(host: Host) -> None:
    outcome = run_model(host, "no_entry")
    assert "has no callable attribute 'createModelState'" in outcome.error["details"]


def test_call_before_initialize_is_an_error_result(host: Host) -> None:
    outcome = host.create_state({})
    assert "no model was initialized" in outcome.error["details"]


def test_unknown_method_with_id_gets_an_error_result(host: Host) -> None:
    host.send_command("callTrainSomething", {"id": "x1"})
    message = host.read_message()
    assert message["id"] == "x1"
    assert "unknown method 'callTrainSomething'" in message["result"]["error"]["details"]


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"params": [{"name": "x", "dataset": "d", "amount": -1, "totalByteSize": 0}]}, "amount"),
        ({"params": [{"name": "x"}]}, "params[0].dataset is missing or not a string"),
        ({"params": [], "otherModels": [{"id": "o"}]}, "otherModels[0].mountPath is missing"),
    ],
)
def test_malformed_call_gets_an_error_result_naming_the_field(
    host: Host, params: dict, reason: str
) -> None:
    host.send_command("callCreateModelState", {"id": "bad", **params})
    message = host.read_message()
    assert message["id"] == "bad"
    details = message["result"]["error"]["details"]
    assert details.startswith("callCreateModelState: ") and reason in details, details
    assert host.create_state({}).error is not None  # still serving (no model initialized)


def test_reading_in_pages_returns_every_element_in_order(host: Host) -> None:
    values = np.arange(10_000, dtype=np.float32)
    outcome = run_model(host, "read_all", {"x": [tensor.serialize(v) for v in values]})
    assert outcome.result == {}
    report = json.loads(outcome.state["report"])["x"]
    assert report["values"] == values.tolist()
    assert report["size"] == 10_000 and report["position"] == 10_000 and report["remaining"] == 0
    assert report["bytes"] == 10_000 * len(tensor.serialize(values[0]))
    assert report["writable"]
    # next(3000) is split into requests of at most 1024 elements.
    assert len(outcome.requests) == 10
    assert max(r["amount"] for r in outcome.requests) <= 1024
    assert sum(r["amount"] for r in outcome.requests) == 10_000


def test_large_elements_arrive_intact_as_writable_arrays(host: Host) -> None:
    rows = [np.full(100_000, i, dtype=np.float64) for i in range(5)]
    params = {"x": [tensor.serialize(r) for r in rows]}
    assert host.initialize(MODELS / "read_all" / "main.py") == {}
    host.send_command("noop", {})  # an unknown command without an id is ignored
    outcome = host.create_state(params)
    report = json.loads(outcome.state["report"])["x"]
    assert report["values"] == [100_000.0 * i for i in range(5)]
    assert report["writable"]


def test_shuffle_in_group_keeps_rows_aligned_and_shuffle_reorders(host: Host) -> None:
    n = 200
    params = {
        "x": [tensor.serialize(np.int32(i)) for i in range(n)],
        "y": [tensor.serialize(str(i)) for i in range(n)],
    }
    outcome = run_model(host, "shuffle", params)
    assert outcome.result == {}
    orders = json.loads(outcome.state["orders"])
    x, y = orders["grouped"]["x"], orders["grouped"]["y"]
    assert sorted(x) == list(range(n)) and x != list(range(n))
    assert y == [str(i) for i in x]
    assert sorted(orders["alone"]) == list(range(n)) and orders["alone"] != x
    assert outcome.shuffles == [["param:x", "param:y"], ["param:x"]]


def test_modules_loaded_before_the_model_are_stdlib_and_runtime_only(host: Host) -> None:
    modules = json.loads(run_model(host, "modules").state["modules"])
    third_party = {m.split(".")[0] for m in modules} & {"grpc", "google", "numpy", "psutil"}
    assert third_party == set()
    assert "asyncio" not in modules  # deferred until the first call


def test_model_output_on_stdout_and_stderr_does_not_disturb_the_protocol(host: Host) -> None:
    outcome = run_model(host, "prints")
    assert outcome.state == {"after_prints": b"still fine"}
    assert host.close() == 0
    assert "line 1999" in host.stdout() and "to stderr 1999" in host.stderr()


def test_other_models_state_is_read_as_bytes(host: Host) -> None:
    assert host.initialize(MODELS / "other_models" / "main.py") == {}
    big = bytes(range(256)) * 4096
    outcome = host.create_state({}, other_models={"base": ("/mnt/base", {"w": big, "e": b""})})
    assert outcome.result == {}
    assert outcome.state == {"mount_path": b"/mnt/base", "copy-w": big, "copy-e": b""}
