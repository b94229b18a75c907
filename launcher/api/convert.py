"""Conversions shared by all servicers: errors and specs between proto and domain types."""

from __future__ import annotations

from launcher.errors import RequestError
from launcher.v1 import common_pb2

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
