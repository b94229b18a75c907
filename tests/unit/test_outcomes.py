"""Job results and request errors: one phase table, integer milliseconds, and the three
readings (seed JSON, protobuf, the client's dict) agreeing for every outcome."""

from __future__ import annotations

import pytest

from launcher import outcomes as oc
from launcher.api import convert
from launcher.client import responses as resp
from launcher.errors import (
    Conflict,
    DatasetKeyNotFound,
    DatasetNotFound,
    Denied,
    InternalError,
    InvalidParameter,
    ModelNotFound,
    NotFound,
    RequestError,
)
from launcher.v1 import model_pb2

DURATIONS = oc.Durations(
    total=4321, phases={oc.Phase.CREATE_LAUNCHER: 21, oc.Phase.CODE_STARTUP: 0}
)
OUTCOMES = [
    oc.Success("s-1"),
    oc.ModelException(oc.Phase.CODE_STARTUP, "Traceback ...\nValueError: x"),
    oc.ModelException(oc.Phase.CREATE_STATE, None),
    oc.CodeTerminated(exit_code=3),
    oc.CodeTerminated(signal="SIGKILL", oom=True),
    oc.CodeTerminated(),
    oc.MaxDurationExceeded(oc.Phase.CODE_STARTUP),
    oc.Cancelled(),
    oc.LauncherTerminated(),
    oc.ServerOverloaded(),
    oc.InvalidExecutableFile("main.py is missing"),
    oc.ReadExecutableFileFailed("EIO"),
    oc.Unknown("0123456789ab"),
]


def test_phase_names_are_written_once() -> None:
    assert [p.value for p in oc.Phase] == ["createLauncher", "codeStartup", "createState"]
    assert [p.snake for p in oc.Phase] == ["create_launcher", "code_startup", "create_state"]
    for phase in oc.Phase:
        assert oc.Phase.parse(phase.value) is phase is oc.Phase.parse(phase.snake)
        assert phase.snake in model_pb2.Durations.DESCRIPTOR.fields_by_name
    with pytest.raises(ValueError, match="no phase"):
        oc.Phase.parse("warmUp")


@pytest.mark.parametrize(
    ("nanoseconds", "milliseconds"),
    [(0, 0), (499_999, 0), (500_000, 1), (1_499_999, 1), (1_500_000, 2), (-5, 0)],
)
def test_durations_are_rounded_to_whole_milliseconds(nanoseconds: int, milliseconds: int) -> None:
    assert oc.ms(nanoseconds) == milliseconds
    assert type(oc.ms(nanoseconds)) is int


@pytest.mark.parametrize("outcome", OUTCOMES, ids=repr)
def test_the_protobuf_and_the_client_read_a_result_as_the_seed_json(outcome: oc.Outcome) -> None:
    result = oc.JobResult(outcome, DURATIONS)
    expected = oc.response_json(result)
    wire = model_pb2.CreateStateResponse.FromString(
        convert.create_state_response(result).SerializeToString()
    )
    assert resp.create_state_response(wire) == expected
    durations = next(iter(expected["result"].values()))["durations"]
    assert durations == {"total": 4321, "createLauncher": 21, "codeStartup": 0}
    assert all(type(v) is int for v in durations.values())


@pytest.mark.parametrize("outcome", OUTCOMES, ids=repr)
def test_the_seed_json_reads_back_as_the_same_result(outcome: oc.Outcome) -> None:
    result = oc.JobResult(outcome, DURATIONS)
    back = oc.result_from_json(oc.response_json(result))
    if isinstance(outcome, oc.InvalidExecutableFile | oc.ReadExecutableFileFailed):
        # The seed's error object carries only the code for these; the reason is logged.
        assert back == oc.JobResult(type(outcome)(""), DURATIONS)
    else:
        assert back == result


def test_each_failure_writes_its_own_seed_error() -> None:
    assert oc.failure_error_json(oc.CodeTerminated(signal="SIGKILL", oom=True)) == {
        "code": "code_terminated",
        "oom": True,
        "signal": "SIGKILL",
    }
    assert oc.failure_error_json(oc.ModelException(oc.Phase.CREATE_STATE, "tb")) == {
        "code": "exception",
        "at": "createState",
        "exceptionDetails": "tb",
    }
    assert oc.failure_error_json(oc.Unknown("abc")) == {
        "code": "unknown",
        "reason": "internal error, see the launcher log id abc",
    }
    assert oc.JobResult(oc.Cancelled(), DURATIONS).code == "cancelled"
    assert oc.JobResult(oc.Success("s"), DURATIONS).code == "success"


def test_an_unknown_failure_code_is_refused_when_read() -> None:
    with pytest.raises(ValueError, match="unknown failure code"):
        oc.failure_from_json({"code": "exploded"})


REQUEST_ERRORS = [
    (InvalidParameter("params[1].data[3]", "bad"), {"parameterName": "params[1].data[3]"}),
    (ModelNotFound("m"), {}),
    (NotFound("state_not_found"), {}),
    (DatasetNotFound("d-1"), {"datasetId": "d-1"}),
    (DatasetKeyNotFound("d-1", "x"), {"datasetId": "d-1", "datasetKey": "x"}),
    (Conflict("state_is_active"), {}),
    (Denied("too_many_requests"), {}),
    (InternalError("feed"), {"reason": "internal error, see the launcher log id feed"}),
]


@pytest.mark.parametrize(("error", "fields"), REQUEST_ERRORS, ids=lambda e: repr(e))
def test_request_errors_are_typed_and_read_the_same_everywhere(
    error: RequestError, fields: dict[str, str]
) -> None:
    expected = oc.response_json(error)
    assert expected == {"error": error.to_json()}
    assert fields.items() <= error.to_json().items()
    wire = model_pb2.CreateStateResponse.FromString(
        convert.create_state_response(error).SerializeToString()
    )
    assert resp.create_state_response(wire) == expected


def test_model_not_found_is_typed() -> None:
    error = ModelNotFound("linear")
    assert isinstance(error, NotFound) and isinstance(error, RequestError)
    assert error.code == "model_not_found" and error.model_id == "linear"
    assert str(error) == "model_not_found" and not isinstance(error, KeyError)


@pytest.mark.parametrize(
    ("family", "code"),
    [(NotFound, "bad_credentials"), (Conflict, "model_not_found"), (Denied, "state_is_active")],
)
def test_a_family_refuses_codes_of_another(family: type, code: str) -> None:
    with pytest.raises(ValueError, match="cannot carry"):
        family(code)
