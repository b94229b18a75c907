"""Every example model in examples/models runs through the test host and makes its state."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from runtime import tensor
from tests.support.host import REPO_ROOT, Host

EXAMPLES = REPO_ROOT / "examples" / "models"


@pytest.fixture
def host(tmp_path: Path):
    h = Host(tmp_path)
    yield h
    if h.process.poll() is None:
        h.close()


def start(host: Host, name: str) -> None:
    assert host.initialize(EXAMPLES / name / "main.py") == {}


@pytest.mark.parametrize("name", ["hello", "linear", "mean-batches"])
def test_example_has_a_python_model_toml_and_a_readme(name: str) -> None:
    config = tomllib.loads((EXAMPLES / name / "model.toml").read_text())
    assert config["runtime"] == "python"
    assert set(config["max_durations_seconds"]) == {"code_startup", "create_state"}
    assert (EXAMPLES / name / "README.md").read_text().startswith(f"# {name}")


def test_hello_provides_its_greeting(host: Host) -> None:
    start(host, "hello")
    outcome = host.create_state({})
    assert outcome.result == {} and outcome.state == {"greeting": b"hello"}


def test_linear_makes_seeded_weights_and_zero_bias(host: Host) -> None:
    start(host, "linear")
    params = {
        "input_size": [tensor.serialize(np.int32(3))],
        "output_size": [tensor.serialize(np.int64(2))],
        "seed": [tensor.serialize(np.int32(7))],
    }
    outcome = host.create_state(params)
    assert outcome.result == {}
    weights = np.frombuffer(outcome.state["weights"], dtype="<f4").reshape(3, 2)
    expected = np.random.default_rng(7).uniform(-1.0954, 1.0954, size=(3, 2))
    assert np.allclose(weights, expected, atol=1e-3)
    assert outcome.state["bias"] == bytes(8)


def test_linear_refuses_a_non_integer_size(host: Host) -> None:
    start(host, "linear")
    params = {
        "input_size": [tensor.serialize(np.float32(3))],
        "output_size": [tensor.serialize(np.int64(2))],
    }
    outcome = host.create_state(params)
    assert "param 'input_size' must be one i32 or i64 scalar" in outcome.error["details"]


def test_mean_batches_reads_in_batches_of_64(host: Host) -> None:
    start(host, "mean-batches")
    rows = np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32)
    outcome = host.create_state({"x": [tensor.serialize(r) for r in rows]})
    assert outcome.result == {}
    mean = np.frombuffer(outcome.state["mean"], dtype="<f8")
    assert np.allclose(mean, rows.astype(np.float64).mean(axis=0))
    assert np.frombuffer(outcome.state["count"], dtype="<i8").tolist() == [300]
    assert [r["amount"] for r in outcome.requests] == [64, 64, 64, 64, 44]
