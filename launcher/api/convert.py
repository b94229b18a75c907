"""Conversions shared by all servicers: errors and specs between proto and domain types."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from launcher.errors import RequestError
from launcher.v1 import common_pb2, model_pb2

log = logging.getLogger("launcher.api")


def unknown_error(what: str) -> RequestError:
    """Log the current exception under a fresh id and return the ``unknown`` error naming it."""
    log_id = uuid.uuid4().hex[:12]
    log.exception("%s failed with an internal error [log id %s]", what, log_id)
    return RequestError("unknown", reason=f"internal error, see the launcher log id {log_id}")


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


def create_state_response(response: dict[str, Any]) -> model_pb2.CreateStateResponse:
    """The seed's createState response dict (see ``launcher.outcomes``) on the wire."""
    if "error" in response:
        err = response["error"]
        fields = {k: v for k, v in err.items() if k != "code"}
        return model_pb2.CreateStateResponse(
            error=error_to_proto(RequestError(err["code"], **fields))
        )
    result = response["result"]
    if "success" in result:
        success = result["success"]
        return model_pb2.CreateStateResponse(
            result=model_pb2.CreateStateResult(
                success=model_pb2.CreateStateSuccess(
                    durations=_durations(success["durations"]), state_id=success["stateId"]
                )
            )
        )
    failed = result["failed"]
    error = failed["error"]
    proto_error = model_pb2.FailedError(code=error["code"], at=error.get("at", ""))
    if "exitCode" in error:
        proto_error.exit_code = error["exitCode"]
    if "signal" in error:
        proto_error.signal = error["signal"]
    proto_error.oom = bool(error.get("oom", False))
    if "exceptionDetails" in error:
        proto_error.exception_details = error["exceptionDetails"]
    proto_error.reason = error.get("reason", "")
    return model_pb2.CreateStateResponse(
        result=model_pb2.CreateStateResult(
            failed=model_pb2.CreateStateFailed(
                durations=_durations(failed["durations"]), error=proto_error
            )
        )
    )


def _durations(durations: dict[str, float]) -> model_pb2.Durations:
    msg = model_pb2.Durations(total=durations["total"])
    for key, field in (
        ("createLauncher", "create_launcher"),
        ("codeStartup", "code_startup"),
        ("createState", "create_state"),
    ):
        if key in durations:
            setattr(msg, field, durations[key])
    return msg
