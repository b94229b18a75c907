"""Request-level errors: the seed's ``error`` object, as one exception type.

Any layer may raise ``RequestError``; the gRPC servicers turn it into the response's
``error`` field in one place (``launcher.api.convert.error_to_proto``).
"""

from __future__ import annotations

from typing import Any


class RequestError(Exception):
    """A request refused before anything ran: ``{"code": ..., **fields}``."""

    def __init__(self, code: str, **fields: str) -> None:
        self.code = code
        self.fields = fields
        super().__init__(self.describe())

    def describe(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in self.fields.items())
        return f"{self.code} ({extra})" if extra else self.code

    def to_json(self) -> dict[str, Any]:
        """The seed's error object (camelCase keys)."""
        out: dict[str, Any] = {"code": self.code}
        out.update(self.fields)
        return out


def invalid(parameter_name: str, reason: str) -> RequestError:
    """``invalid_parameter`` naming the parameter path (e.g. ``params[1].data[3]``)."""
    return RequestError("invalid_parameter", parameterName=parameter_name, reason=reason)


def dataset_not_found(dataset_id: str) -> RequestError:
    return RequestError("dataset_not_found", datasetId=dataset_id)


def dataset_key_not_found(dataset_id: str, dataset_key: str) -> RequestError:
    return RequestError("dataset_key_not_found", datasetId=dataset_id, datasetKey=dataset_key)
