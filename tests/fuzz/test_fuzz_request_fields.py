"""Each field of ``CreateStateHeader`` (model.proto) refused when bad, with its code and path:
the cases that ``test_create_state_requests.py`` does not already cover (found by going
through the proto field by field), so that every field has at least one refusal test."""

from __future__ import annotations

import math

import pytest

from launcher.v1 import common_pb2, model_pb2
from tests.support.launcher_proc import LauncherProcess
from tests.support.raw_requests import GOOD, call, header, inline, req_chunk, req_header


def _loc(**kw: object) -> model_pb2.ExecutionLocation:
    fields: dict[str, object] = {"cpus": 1.0, "memory_mebibytes": 512}
    fields.update(kw)
    return model_pb2.ExecutionLocation(temporary_launcher_spec=common_pb2.LauncherSpec(**fields))


def _dataset(dataset_id: str, key: str) -> model_pb2.Param:
    return model_pb2.Param(
        name="d", dataset=model_pb2.DatasetParam(dataset_id=dataset_id, dataset_key=key)
    )


def _mount(**kw: str) -> list[model_pb2.MountModel]:
    return [model_pb2.MountModel(**kw)]


SPEC = "executionLocation.spec"
# (what, header fields, the code, the parameterName for invalid_parameter)
CASES: list[tuple[str, dict[str, object], str, str | None]] = [
    ("unknown model", {"model_id": "no_such_model"}, "model_not_found", None),
    ("model id too long", {"model_id": "m" * 129}, "invalid_parameter", "modelId"),
    ("name not printable", {"name": "a\nb"}, "invalid_parameter", "name"),
    (
        "too many params",
        {"params": [inline(f"p{i}", b"") for i in range(257)]},
        "invalid_parameter",
        "params",
    ),
    ("param name empty", {"params": [inline("", GOOD)]}, "invalid_parameter", "params[0].name"),
    (
        "param name too long",
        {"params": [inline("p" * 257, GOOD)]},
        "invalid_parameter",
        "params[0].name",
    ),
    (
        "inline param over 1 TiB",
        {"params": [model_pb2.Param(name="a", inline=model_pb2.InlineParam(byte_size=1 << 41))]},
        "invalid_parameter",
        "params[0].data",
    ),
    (
        "dataset key empty",
        {"params": [_dataset("ds", "")]},
        "invalid_parameter",
        "params[0].data.datasetKey",
    ),
    ("unknown dataset", {"params": [_dataset("no-such-ds", "k")]}, "dataset_not_found", None),
    (
        "too many mounts",
        {"mount_models": [model_pb2.MountModel(model_id=f"m{i}") for i in range(17)]},
        "invalid_parameter",
        "mountModels",
    ),
    (
        "mount model id malformed",
        {"mount_models": _mount(model_id="../up")},
        "invalid_parameter",
        "mountModels[0].modelId",
    ),
    (
        "mount state id malformed",
        {"mount_models": _mount(model_id="hello", state_id="")},
        "invalid_parameter",
        "mountModels[0].stateId",
    ),
    (
        "mount snapshot id malformed",
        {"mount_models": _mount(model_id="hello", snapshot_id="a b")},
        "invalid_parameter",
        "mountModels[0].snapshotId",
    ),
    (
        "persistent launcher id malformed",
        {"execution_location": model_pb2.ExecutionLocation(persistent_launcher_id="")},
        "invalid_parameter",
        "executionLocation.persistentLauncherId",
    ),
    (
        "unknown persistent launcher",
        {"execution_location": model_pb2.ExecutionLocation(persistent_launcher_id="pl-nope")},
        "persistent_launcher_not_found",
        None,
    ),
    (
        "cpus infinite",
        {"execution_location": _loc(cpus=math.inf)},
        "invalid_parameter",
        f"{SPEC}.cpus",
    ),
    ("cpus negative", {"execution_location": _loc(cpus=-1.0)}, "invalid_parameter", f"{SPEC}.cpus"),
    (
        "disk zero",
        {"execution_location": _loc(disk_mebibytes=0)},
        "invalid_parameter",
        f"{SPEC}.diskMebibytes",
    ),
    (
        "disk absurd",
        {"execution_location": _loc(disk_mebibytes=1 << 60)},
        "invalid_parameter",
        f"{SPEC}.diskMebibytes",
    ),
    (
        "swap absurd",
        {"execution_location": _loc(swap_mebibytes=1 << 60)},
        "invalid_parameter",
        f"{SPEC}.swapMebibytes",
    ),
    (
        "gpu count zero",
        {"execution_location": _loc(gpus=common_pb2.GpuRequest(model="a100", count=0))},
        "invalid_parameter",
        f"{SPEC}.gpus.count",
    ),
    (
        "gpu count absurd",
        {"execution_location": _loc(gpus=common_pb2.GpuRequest(model="a100", count=1 << 31))},
        "invalid_parameter",
        f"{SPEC}.gpus.count",
    ),
    (
        # No model: any GPU model (issue 16); the test launcher has no GPUs at all.
        "gpus of any model on a machine without GPUs",
        {"execution_location": _loc(gpus=common_pb2.GpuRequest(model="", count=1))},
        "invalid_parameter",
        f"{SPEC}.gpus",
    ),
    (
        "gpu model too long",
        {"execution_location": _loc(gpus=common_pb2.GpuRequest(model="x" * 10_000, count=1))},
        "invalid_parameter",
        f"{SPEC}.gpus.model",
    ),
]


@pytest.mark.parametrize(("what", "fields", "code", "path"), CASES, ids=[c[0] for c in CASES])
def test_each_header_field_refuses_bad_values(
    launcher: LauncherProcess, what: str, fields: dict[str, object], code: str, path: str | None
) -> None:
    err = call(launcher, [req_header(header(**fields))])
    assert err["code"] == code, err
    if path is not None:
        assert err["parameterName"] == path, err
        assert err["reason"], "the reason must say what to do"


def test_chunk_for_a_param_that_does_not_exist_is_refused(launcher: LauncherProcess) -> None:
    err = call(launcher, [req_header(header(params=[inline("a", GOOD)])), req_chunk(7, GOOD)])
    assert err["code"] == "invalid_parameter"
    assert err["parameterName"] == "params[7].data"
