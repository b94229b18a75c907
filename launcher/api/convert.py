"""Conversions shared by all servicers: domain types to protobuf, in one place.

A job's ``JobResult`` and a ``RequestError`` become protobuf here directly (no dict in the
middle). Durations are integer milliseconds already; timestamps, kept by the stores as Unix
seconds, become integer Unix milliseconds (``unix_ms``).
"""

from __future__ import annotations

import logging
import uuid

from launcher import outcomes as oc
from launcher.errors import InternalError, RequestError
from launcher.v1 import common_pb2, model_pb2

log = logging.getLogger("launcher.api")


def unknown_error(what: str) -> RequestError:
    """Log the current exception under a fresh id and return the ``unknown`` error naming it."""
    log_id = uuid.uuid4().hex[:12]
    log.exception("%s failed with an internal error [log id %s]", what, log_id)
    return InternalError(log_id)


def unix_ms(seconds: float) -> int:
    """Unix seconds (as the stores keep them) to integer Unix milliseconds (as the API gives)."""
    return max(0, round(seconds * 1000))


def seconds(unix_milliseconds: int) -> float:
    """Integer Unix milliseconds (from a request) to the stores' Unix seconds."""
    return unix_milliseconds / 1000


_FIELD_NAMES = {
    "parameterName": "parameter_name",
    "reason": "reason",
    "datasetId": "dataset_id",
    "datasetKey": "dataset_key",
}


def error_to_proto(err: RequestError) -> common_pb2.Error:
    msg = common_pb2.Error(code=err.code)
    for key, value in err.fields.items():
        setattr(msg, _FIELD_NAMES[key], value)
    return msg


def empty_ok() -> common_pb2.EmptyResponse:
    return common_pb2.EmptyResponse(result=common_pb2.Empty())


def empty_error(err: RequestError) -> common_pb2.EmptyResponse:
    return common_pb2.EmptyResponse(error=error_to_proto(err))


def durations_to_proto(durations: oc.Durations) -> model_pb2.Durations:
    msg = model_pb2.Durations(total=durations.total)
    for phase, value in durations.phases.items():
        setattr(msg, phase.snake, value)
    return msg


def failure_to_proto(failure: oc.Failure) -> model_pb2.FailedError:
    msg = model_pb2.FailedError(code=oc.failure_code(failure))
    if isinstance(failure, oc.ModelException):
        msg.at = failure.at.value
        if failure.details is not None:
            msg.exception_details = failure.details
    elif isinstance(failure, oc.CodeTerminated):
        msg.oom = failure.oom
        if failure.signal is not None:
            msg.signal = failure.signal
        elif failure.exit_code is not None:
            msg.exit_code = failure.exit_code
    elif isinstance(failure, oc.MaxDurationExceeded):
        msg.at = failure.at.value
    elif isinstance(failure, oc.Unknown | oc.QuotaExceeded):
        msg.reason = failure.reason
    return msg


def create_state_response(answer: oc.JobResult | RequestError) -> model_pb2.CreateStateResponse:
    """A job's result, or a request refused before it ran, as the createState response."""
    if isinstance(answer, RequestError):
        return model_pb2.CreateStateResponse(error=error_to_proto(answer))
    durations = durations_to_proto(answer.durations)
    if isinstance(answer.outcome, oc.Success):
        result = model_pb2.CreateStateResult(
            success=model_pb2.CreateStateSuccess(
                durations=durations, state_id=answer.outcome.state_id
            )
        )
    else:
        result = model_pb2.CreateStateResult(
            failed=model_pb2.CreateStateFailed(
                durations=durations, error=failure_to_proto(answer.outcome)
            )
        )
    return model_pb2.CreateStateResponse(result=result)
