"""Client conversions between the seed's dicts and the proto messages (no server involved)."""

from __future__ import annotations

import pytest

from launcher.client import requests as req
from launcher.client import responses as resp
from launcher.errors import RequestError
from launcher.v1 import common_pb2, dataset_pb2, model_pb2
from launcher.v1 import persistent_launcher_pb2 as pl_pb2


def test_full_launcher_spec_maps_every_field() -> None:
    spec = {
        "cpus": 1.5,
        "memoryMebibytes": 512,
        "diskMebibytes": 100,
        "swapMebibytes": 0,
        "gpus": {"model": "h100", "count": 2},
    }
    msg = req.spec_to_proto(spec, "spec")
    assert (msg.cpus, msg.memory_mebibytes, msg.disk_mebibytes) == (1.5, 512, 100)
    assert msg.HasField("swap_mebibytes") and msg.swap_mebibytes == 0
    assert (msg.gpus.model, msg.gpus.count) == ("h100", 2)
    assert resp.spec_dict(msg) == spec


def test_minimal_launcher_spec_leaves_optional_fields_unset() -> None:
    msg = req.spec_to_proto({"cpus": 1, "memoryMebibytes": 64}, "spec")
    assert not msg.HasField("disk_mebibytes") and not msg.HasField("gpus")
    assert resp.spec_dict(msg) == {"cpus": 1.0, "memoryMebibytes": 64}


def test_execution_locations_map_to_the_oneof() -> None:
    persistent = req.location_to_proto({"type": "persistentLauncher", "persistentLauncherId": "p"})
    assert persistent.WhichOneof("location") == "persistent_launcher_id"
    assert persistent.persistent_launcher_id == "p"
    temporary = req.location_to_proto(
        {"type": "temporaryLauncher", "spec": {"cpus": 1, "memoryMebibytes": 8}}
    )
    assert temporary.temporary_launcher_spec.memory_mebibytes == 8


@pytest.mark.parametrize(
    ("location", "parameter"),
    [
        (None, "executionLocation"),
        ({}, "executionLocation.type"),
        ({"type": "cloud"}, "executionLocation.type"),
        ({"type": "persistentLauncher"}, "executionLocation.persistentLauncherId"),
        ({"type": "temporaryLauncher"}, "executionLocation.spec"),
        (
            {"type": "temporaryLauncher", "spec": {"cpus": 1}},
            "executionLocation.spec.memoryMebibytes",
        ),
        (
            {"type": "temporaryLauncher", "spec": {"cpus": "x", "memoryMebibytes": 1}},
            "executionLocation.spec.cpus",
        ),
        (
            {"type": "temporaryLauncher", "spec": {"cpus": 1, "memoryMebibytes": -1}},
            "executionLocation.spec.memoryMebibytes",
        ),
        (
            {"type": "temporaryLauncher", "spec": {"cpus": 1, "memoryMebibytes": 1, "gpus": 2}},
            "executionLocation.spec.gpus",
        ),
    ],
)
def test_malformed_execution_location_is_refused_with_its_path(
    location: object, parameter: str
) -> None:
    with pytest.raises(RequestError) as info:
        req.location_to_proto(location)
    assert info.value.code == "invalid_parameter"
    assert info.value.fields["parameterName"] == parameter
    assert info.value.fields["reason"]


def test_mounts_keep_only_given_ids() -> None:
    mounts = req.mounts_to_proto([{"modelId": "a"}, {"modelId": "b", "snapshotId": "sn"}])
    assert not mounts[0].HasField("state_id") and not mounts[0].HasField("snapshot_id")
    assert mounts[1].snapshot_id == "sn"
    assert req.mounts_to_proto(None) == []
    with pytest.raises(RequestError, match=r"mountModels\[0\]\.modelId"):
        req.mounts_to_proto([{"stateId": "s"}])


def test_entry_selections_map_ranges_and_indexes() -> None:
    assert req.entries_to_proto({"start": 1, "end": 4}).range.end == 4
    assert list(req.entries_to_proto([5, 2]).indexes.indexes) == [5, 2]
    for bad, name in (("1-3", "entries"), ([1, -1], r"entries\[1\]"), ({"start": 1}, "end")):
        with pytest.raises(RequestError, match=name):
            req.entries_to_proto(bad)


def test_dataset_keys_map_rules_and_come_back_the_same() -> None:
    keys = [
        {"name": "x", "required": True, "rules": {"shape": [-1, 3], "allowedTypes": ["f32"]}},
        {"name": "y", "required": False, "rules": {"allowedTypes": []}},
    ]
    msgs = req.dataset_keys_to_proto(keys)
    assert msgs[0].rules.has_shape and list(msgs[0].rules.shape) == [-1, 3]
    assert not msgs[1].rules.has_shape
    info = dataset_pb2.DatasetInfo(id="d", keys=msgs, created_at=2500)
    result = resp.datasets(dataset_pb2.GetDatasetsResponse.Result(datasets=[info], total=1))
    assert result["datasets"][0]["keys"] == keys
    assert result["datasets"][0]["createdAt"] == 2500
    with pytest.raises(RequestError, match=r"keys\[0\]\.rules\.shape\[0\]"):
        req.dataset_keys_to_proto([{"name": "x", "rules": {"shape": [-2]}}])


def test_unknown_filter_fields_are_refused() -> None:
    with pytest.raises(RequestError, match="filter.names"):
        req.filter_ids({"names": ["a"]})


def test_error_dict_has_only_the_set_fields() -> None:
    assert resp.error_dict(common_pb2.Error(code="dataset_not_found", dataset_id="d")) == {
        "code": "dataset_not_found",
        "datasetId": "d",
    }
    invalid = common_pb2.Error(code="invalid_parameter", parameter_name="p", reason="r")
    assert resp.error_dict(invalid) == {
        "code": "invalid_parameter",
        "parameterName": "p",
        "reason": "r",
    }


def _failed(error: model_pb2.FailedError, **durations: int) -> model_pb2.CreateStateResponse:
    failed = model_pb2.CreateStateFailed(durations=model_pb2.Durations(**durations), error=error)
    return model_pb2.CreateStateResponse(result=model_pb2.CreateStateResult(failed=failed))


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (model_pb2.FailedError(code="cancelled", at="x", reason="r"), {"code": "cancelled"}),
        (
            model_pb2.FailedError(code="max_duration_exceeded", at="createState"),
            {"code": "max_duration_exceeded", "at": "createState"},
        ),
        (
            model_pb2.FailedError(code="exception", at="codeStartup", exception_details="tb"),
            {"code": "exception", "at": "codeStartup", "exceptionDetails": "tb"},
        ),
        (
            model_pb2.FailedError(code="exception", at="createState"),
            {"code": "exception", "at": "createState"},
        ),
        (
            model_pb2.FailedError(code="code_terminated", exit_code=0),
            {"code": "code_terminated", "exitCode": 0, "oom": False},
        ),
        (
            model_pb2.FailedError(code="code_terminated", signal="SIGKILL", oom=True),
            {"code": "code_terminated", "signal": "SIGKILL", "oom": True},
        ),
        (
            model_pb2.FailedError(code="unknown", reason="id 7"),
            {"code": "unknown", "reason": "id 7"},
        ),
        (model_pb2.FailedError(code="unknown"), {"code": "unknown"}),
    ],
)
def test_failed_outcomes_carry_exactly_their_codes_fields(
    error: model_pb2.FailedError, expected: dict[str, object]
) -> None:
    response = resp.create_state_response(_failed(error, total=1000, code_startup=500))
    assert response == {
        "result": {"failed": {"durations": {"total": 1000, "codeStartup": 500}, "error": expected}}
    }


def test_zero_durations_that_are_set_are_kept() -> None:
    durations = model_pb2.Durations(total=0, create_state=0)
    assert resp.durations(durations) == {"total": 0, "createState": 0}


def test_request_errors_of_create_state_become_the_error_value() -> None:
    response = model_pb2.CreateStateResponse(error=common_pb2.Error(code="model_not_found"))
    assert resp.create_state_response(response) == {"error": {"code": "model_not_found"}}


def test_phase_events_have_duration_only_when_finished() -> None:
    started = resp.phase_event(model_pb2.PhaseEvent(phase="codeStartup", state_id="s"))
    assert started == {"event": "phaseStarted", "phase": "codeStartup", "stateId": "s"}
    finished = resp.phase_event(
        model_pb2.PhaseEvent(finished=True, phase="codeStartup", state_id="s", duration=0)
    )
    assert finished["event"] == "phaseFinished" and finished["duration"] == 0


def test_models_map_to_model_and_state_dicts() -> None:
    state = model_pb2.StateInfo(
        id="s",
        name="init",
        created_at=1001,
        keys=[model_pb2.StateKeyInfo(key="w", byte_size=9)],
        mounted_models=[
            model_pb2.MountedModelInfo(model_id="o"),
            model_pb2.MountedModelInfo(model_id="p", snapshot_id="sn"),
        ],
    )
    model = model_pb2.ModelInfo(
        id="m",
        name="M",
        created_at=3000,
        active_state="s",
        states=[state],
        max_durations_seconds=model_pb2.MaxDurations(code_startup=120, create_state=3600),
        snapshots=[model_pb2.SnapshotInfo(id="sn", name="v1", created_at=4000, state_id="s")],
    )
    result = resp.models(model_pb2.GetModelsResponse.Result(models=[model], total=1, limit=20))
    assert result == {
        "models": [
            {
                "id": "m",
                "name": "M",
                "createdAt": 3000,
                "activeState": "s",
                "states": [
                    {
                        "id": "s",
                        "name": "init",
                        "createdAt": 1001,
                        "beingDeleted": False,
                        "state": [{"key": "w", "byteSize": 9}],
                        "mountedModels": [{"modelId": "o"}, {"modelId": "p", "snapshotId": "sn"}],
                        "trainingOperations": [],
                    }
                ],
                "maxDurationsSeconds": {"codeStartup": 120.0, "createState": 3600.0},
                "snapshots": [{"id": "sn", "name": "v1", "createdAt": 4000, "stateId": "s"}],
            }
        ],
        "total": 1,
        "offset": 0,
        "limit": 20,
    }
    no_active = resp.models(model_pb2.GetModelsResponse.Result(models=[model_pb2.ModelInfo()]))
    assert no_active["models"][0]["activeState"] is None


def test_creating_states_use_millisecond_timestamps() -> None:
    result = model_pb2.GetCreatingStatesResponse.Result(
        states=[model_pb2.CreatingState(id="s", name="n", started_at=10500)]
    )
    assert resp.creating_states(result) == {
        "states": [{"id": "s", "name": "n", "startedAt": 10500}]
    }


def test_persistent_launchers_map_state_and_running_operations() -> None:
    info = pl_pb2.PersistentLauncherInfo(
        id="p",
        name="gpu box",
        created_at=1000,
        spec=common_pb2.LauncherSpec(cpus=2, memory_mebibytes=1024),
        state="active",
        running=[pl_pb2.RunningOperation(id="s-1", type="createState")],
    )
    result = resp.persistent_launchers(
        pl_pb2.GetPersistentLaunchersResponse.Result(persistent_launchers=[info], total=1)
    )
    assert result["persistentLaunchers"] == [
        {
            "id": "p",
            "name": "gpu box",
            "createdAt": 1000,
            "spec": {"cpus": 2.0, "memoryMebibytes": 1024},
            "state": {"type": "active"},
            "running": [{"id": "s-1", "type": "createState"}],
        }
    ]
    assert result["total"] == 1


def test_empty_outcome_maps_to_an_empty_result() -> None:
    ok = common_pb2.EmptyResponse(result=common_pb2.Empty())
    assert resp.outcome(ok, resp.empty) == {"result": {}}
