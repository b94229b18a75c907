"""Request-level errors: the seed's ``error`` object, one exception class per code family.

Any layer may raise a ``RequestError``; each class knows its code and writes its own fields
(``fields``, camelCase as in the seed). The gRPC servicers turn it into the response's
``error`` field in one place (``launcher.api.convert.error_to_proto``), the platform HTTP API
with ``to_json``.

``RequestError(code, **fields)`` still builds any code directly; the classes below are the
typed forms raised by the launcher's own code.
"""

from __future__ import annotations

from typing import Any, ClassVar


class RequestError(Exception):
    """A request refused before anything ran: ``{"code": ..., **fields}``."""

    code: str = "unknown"
    #: The codes a class may carry (empty: only its class-level ``code``).
    codes: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, code: str | None = None, **fields: str) -> None:
        if code is not None:
            if self.codes and code not in self.codes:
                raise ValueError(f"{type(self).__name__} cannot carry the code {code!r}")
            self.code = code
        self.fields: dict[str, str] = fields
        super().__init__(self.describe())

    def describe(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in self.fields.items())
        return f"{self.code} ({extra})" if extra else self.code

    def to_json(self) -> dict[str, Any]:
        """The seed's error object (camelCase keys)."""
        out: dict[str, Any] = {"code": self.code}
        out.update(self.fields)
        return out


class InvalidParameter(RequestError):
    """``invalid_parameter``: ``parameterName`` is a path such as ``params[1].data[3]``."""

    code = "invalid_parameter"

    def __init__(self, parameter_name: str, reason: str) -> None:
        self.parameter_name = parameter_name
        self.reason = reason
        super().__init__(parameterName=parameter_name, reason=reason)


class NotFound(RequestError):
    """What the request names does not exist (``*_not_found``, ``snapshot_no_longer_exists``)."""

    codes = frozenset(
        {
            "model_not_found",
            "model_to_mount_not_found",
            "state_for_model_to_mount_not_found",
            "snapshot_for_model_to_mount_not_found",
            "persistent_launcher_not_found",
            "snapshot_no_longer_exists",
            "snapshot_not_found",
            "state_not_found",
            "state_key_not_found",
        }
    )

    def __init__(self, code: str) -> None:
        super().__init__(code)


class ModelNotFound(NotFound):
    """No model folder for ``model_id`` (``model_not_found``); the model registry raises it."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        super().__init__("model_not_found")


class DatasetNotFound(RequestError):
    code = "dataset_not_found"

    def __init__(self, dataset_id: str) -> None:
        self.dataset_id = dataset_id
        super().__init__(datasetId=dataset_id)


class DatasetKeyNotFound(RequestError):
    code = "dataset_key_not_found"

    def __init__(self, dataset_id: str, dataset_key: str) -> None:
        self.dataset_id = dataset_id
        self.dataset_key = dataset_key
        super().__init__(datasetId=dataset_id, datasetKey=dataset_key)


class Conflict(RequestError):
    """The request conflicts with the current state of what it names."""

    codes = frozenset({"state_is_active", "state_already_created"})

    def __init__(self, code: str) -> None:
        super().__init__(code)


class Denied(RequestError):
    """Authentication, access, rate limits, quotas (and ``payment_required``, never sent)."""

    codes = frozenset(
        {
            "bad_credentials",
            "access_denied",
            "too_many_requests",
            "quota_exceeded",
            "payment_required",
        }
    )

    def __init__(self, code: str, **fields: str) -> None:
        super().__init__(code, **fields)


class InternalError(RequestError):
    """``unknown``: an internal fault, logged under ``log_id``, which the reason names."""

    code = "unknown"

    def __init__(self, log_id: str) -> None:
        self.log_id = log_id
        super().__init__(reason=f"internal error, see the launcher log id {log_id}")


def invalid(parameter_name: str, reason: str) -> InvalidParameter:
    """``invalid_parameter`` naming the parameter path (e.g. ``params[1].data[3]``)."""
    return InvalidParameter(parameter_name, reason)


def dataset_not_found(dataset_id: str) -> DatasetNotFound:
    return DatasetNotFound(dataset_id)


def dataset_key_not_found(dataset_id: str, dataset_key: str) -> DatasetKeyNotFound:
    return DatasetKeyNotFound(dataset_id, dataset_key)
