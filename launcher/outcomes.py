"""Every way a createState job can end, as typed values, and their seed JSON in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Durations:
    """Phase durations in seconds; a phase that did not run stays None."""

    total: float = 0.0
    create_launcher: float | None = None
    code_startup: float | None = None
    create_state: float | None = None

    def to_json(self) -> dict[str, float]:
        out = {"total": self.total}
        for key, value in (
            ("createLauncher", self.create_launcher),
            ("codeStartup", self.code_startup),
            ("createState", self.create_state),
        ):
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True)
class Success:
    state_id: str


@dataclass(frozen=True)
class ModelException:
    """Model code raised at ``at`` ("codeStartup" or "createState")."""

    at: str
    details: str | None


@dataclass(frozen=True)
class CodeTerminated:
    exit_code: int | None = None
    signal: str | None = None
    oom: bool = False


@dataclass(frozen=True)
class MaxDurationExceeded:
    at: str


@dataclass(frozen=True)
class Cancelled:
    pass


@dataclass(frozen=True)
class LauncherTerminated:
    pass


@dataclass(frozen=True)
class ServerOverloaded:
    pass


@dataclass(frozen=True)
class InvalidExecutableFile:
    reason: str


@dataclass(frozen=True)
class ReadExecutableFileFailed:
    reason: str


@dataclass(frozen=True)
class Unknown:
    """An internal fault; ``log_id`` names the log line that holds the details."""

    log_id: str


Failure = (
    ModelException
    | CodeTerminated
    | MaxDurationExceeded
    | Cancelled
    | LauncherTerminated
    | ServerOverloaded
    | InvalidExecutableFile
    | ReadExecutableFileFailed
    | Unknown
)
Outcome = Success | Failure

_PLAIN_CODES: dict[type, str] = {
    Cancelled: "cancelled",
    LauncherTerminated: "launcher_terminated",
    ServerOverloaded: "server_overloaded",
    InvalidExecutableFile: "invalid_executable_file",
    ReadExecutableFileFailed: "read_executable_file_failed",
}


def failure_error_json(failure: Failure) -> dict[str, Any]:
    """The seed's ``result.failed.error`` object for a failure."""
    if isinstance(failure, ModelException):
        out: dict[str, Any] = {"code": "exception", "at": failure.at}
        if failure.details is not None:
            out["exceptionDetails"] = failure.details
        return out
    if isinstance(failure, CodeTerminated):
        out = {"code": "code_terminated", "oom": failure.oom}
        if failure.signal is not None:
            out["signal"] = failure.signal
        elif failure.exit_code is not None:
            out["exitCode"] = failure.exit_code
        return out
    if isinstance(failure, MaxDurationExceeded):
        return {"code": "max_duration_exceeded", "at": failure.at}
    if isinstance(failure, Unknown):
        return {
            "code": "unknown",
            "reason": f"internal error, see the launcher log id {failure.log_id}",
        }
    return {"code": _PLAIN_CODES[type(failure)]}


def response_json(outcome: Outcome, durations: Durations) -> dict[str, Any]:
    """The seed's createState response for a job that was accepted and ran to ``outcome``."""
    if isinstance(outcome, Success):
        return {
            "result": {"success": {"durations": durations.to_json(), "stateId": outcome.state_id}}
        }
    return {
        "result": {
            "failed": {"durations": durations.to_json(), "error": failure_error_json(outcome)}
        }
    }
