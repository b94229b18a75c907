"""Every way a createState job can end, as typed values: ``JobResult`` = outcome + durations.

The runner returns a ``JobResult``, the job table stores it, ``wait_for_state_to_be_created``
replays it; ``launcher.api.convert`` turns it into protobuf and ``response_json`` into the
seed's JSON (the platform HTTP API, the job table's stored form). Durations are integer
milliseconds, measured with ``time.monotonic_ns`` and rounded once (``ms``).

``Phase`` is the one table of phase names: its values are the seed's camelCase names, its
``snake`` the proto / Python field names.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from launcher.errors import RequestError


class Phase(enum.Enum):
    """A job's timed phases, in the order they run."""

    CREATE_LAUNCHER = "createLauncher"
    CODE_STARTUP = "codeStartup"
    CREATE_STATE = "createState"

    @property
    def snake(self) -> str:
        """The field name of this phase in proto messages and Python (``code_startup``)."""
        return self.name.lower()

    @classmethod
    def parse(cls, name: str) -> Phase:
        """The phase named ``name`` (camelCase or snake_case); ``ValueError`` otherwise."""
        for phase in cls:
            if name in (phase.value, phase.snake):
                return phase
        raise ValueError(f"no phase is named {name!r}")


def ms(nanoseconds: int) -> int:
    """Nanoseconds rounded to integer milliseconds (never negative)."""
    return max(0, (nanoseconds + 500_000) // 1_000_000)


@dataclass
class Durations:
    """Phase durations in integer milliseconds; a phase that did not run is absent."""

    total: int = 0
    phases: dict[Phase, int] = field(default_factory=dict)

    def get(self, phase: Phase) -> int | None:
        return self.phases.get(phase)

    def to_json(self) -> dict[str, int]:
        out = {"total": self.total}
        for phase in Phase:
            if phase in self.phases:
                out[phase.value] = self.phases[phase]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], scale: float = 1.0) -> Durations:
        """Read ``to_json``'s form; ``scale=1000`` reads old records written in seconds."""

        def conv(value: Any) -> int:
            return max(0, round(float(value) * scale))

        phases = {p: conv(data[p.value]) for p in Phase if data.get(p.value) is not None}
        return cls(total=conv(data.get("total", 0)), phases=phases)


@dataclass(frozen=True)
class Success:
    state_id: str


@dataclass(frozen=True)
class ModelException:
    """Model code raised during ``at`` (codeStartup or createState)."""

    at: Phase
    details: str | None


@dataclass(frozen=True)
class CodeTerminated:
    exit_code: int | None = None
    signal: str | None = None
    oom: bool = False


@dataclass(frozen=True)
class MaxDurationExceeded:
    at: Phase


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
class QuotaExceeded:
    """The state the worker provided went past its tenant's stored-bytes quota: the job
    was stopped as the bytes arrived and nothing of the state was kept."""

    reason: str


@dataclass(frozen=True)
class Unknown:
    """An internal fault; ``log_id`` names the log line that holds the details."""

    log_id: str

    @property
    def reason(self) -> str:
        return f"internal error, see the launcher log id {self.log_id}"


Failure = (
    ModelException
    | CodeTerminated
    | MaxDurationExceeded
    | Cancelled
    | LauncherTerminated
    | ServerOverloaded
    | InvalidExecutableFile
    | ReadExecutableFileFailed
    | QuotaExceeded
    | Unknown
)
Outcome = Success | Failure

#: The failure code of each failure type (the seed's ``result.failed.error.code``).
FAILURE_CODES: dict[type, str] = {
    ModelException: "exception",
    CodeTerminated: "code_terminated",
    MaxDurationExceeded: "max_duration_exceeded",
    Cancelled: "cancelled",
    LauncherTerminated: "launcher_terminated",
    ServerOverloaded: "server_overloaded",
    InvalidExecutableFile: "invalid_executable_file",
    ReadExecutableFileFailed: "read_executable_file_failed",
    QuotaExceeded: "quota_exceeded",
    Unknown: "unknown",
}
_BY_CODE = {code: kind for kind, code in FAILURE_CODES.items()}


def failure_code(failure: Failure) -> str:
    return FAILURE_CODES[type(failure)]


@dataclass(frozen=True)
class JobResult:
    """How an accepted job ended: its outcome and the durations of the phases that ran."""

    outcome: Outcome
    durations: Durations

    @property
    def success(self) -> bool:
        return isinstance(self.outcome, Success)

    @property
    def code(self) -> str:
        """``success`` or the failure code (for logs and metrics)."""
        return "success" if isinstance(self.outcome, Success) else failure_code(self.outcome)


def failure_error_json(failure: Failure) -> dict[str, Any]:
    """The seed's ``result.failed.error`` object for a failure."""
    out: dict[str, Any] = {"code": failure_code(failure)}
    if isinstance(failure, ModelException):
        out["at"] = failure.at.value
        if failure.details is not None:
            out["exceptionDetails"] = failure.details
    elif isinstance(failure, CodeTerminated):
        out["oom"] = failure.oom
        if failure.signal is not None:
            out["signal"] = failure.signal
        elif failure.exit_code is not None:
            out["exitCode"] = failure.exit_code
    elif isinstance(failure, MaxDurationExceeded):
        out["at"] = failure.at.value
    elif isinstance(failure, Unknown | QuotaExceeded):
        out["reason"] = failure.reason
    return out


def response_json(answer: JobResult | RequestError) -> dict[str, Any]:
    """The seed's createState response as JSON (durations in integer milliseconds): for a
    job's ``JobResult``, or for a request refused before it ran (a ``RequestError``)."""
    if not isinstance(answer, JobResult):
        return {"error": answer.to_json()}
    durations = answer.durations.to_json()
    if isinstance(answer.outcome, Success):
        return {"result": {"success": {"durations": durations, "stateId": answer.outcome.state_id}}}
    error = failure_error_json(answer.outcome)
    return {"result": {"failed": {"durations": durations, "error": error}}}


def failure_from_json(error: dict[str, Any]) -> Failure:
    """The failure of a ``result.failed.error`` object (``ValueError`` for an unknown code)."""
    code = error.get("code")
    kind = _BY_CODE.get(code) if isinstance(code, str) else None
    if kind is None:
        raise ValueError(f"unknown failure code {code!r}")
    if kind is ModelException:
        return ModelException(Phase.parse(error["at"]), error.get("exceptionDetails"))
    if kind is CodeTerminated:
        return CodeTerminated(error.get("exitCode"), error.get("signal"), bool(error.get("oom")))
    if kind is MaxDurationExceeded:
        return MaxDurationExceeded(Phase.parse(error["at"]))
    if kind is Unknown:
        reason = str(error.get("reason", ""))
        return Unknown(reason.rsplit(" ", 1)[-1] if reason else "")
    if kind in (InvalidExecutableFile, ReadExecutableFileFailed, QuotaExceeded):
        return kind(str(error.get("reason", "")))
    return kind()  # type: ignore[no-any-return]


def result_from_json(response: dict[str, Any], scale: float = 1.0) -> JobResult:
    """Read back ``response_json`` of a ``JobResult`` (``scale=1000``: durations in seconds,
    as records of older launchers hold them)."""
    result = response["result"]
    if "success" in result:
        success = result["success"]
        return JobResult(
            Success(str(success["stateId"])), Durations.from_json(success["durations"], scale)
        )
    failed = result["failed"]
    return JobResult(
        failure_from_json(failed["error"]), Durations.from_json(failed["durations"], scale)
    )
