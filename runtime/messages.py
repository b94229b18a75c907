"""Every message of the worker protocol (WORKER-PROTOCOL.md) as a small typed class.

Both sides use only these: the host (``launcher.worker``) and the worker (``runtime.worker``).
Each class encodes itself into frames (through the framing of ``runtime.protocol``) and
``parse``s its JSON document, checking every field and limit; a document that breaks the
protocol raises :class:`MessageError` with a message that quotes at most a short, cut piece of
what was sent. Unknown fields are refused (except inside an error object, which is only cut), so
a worker cannot make the host parse a large document that it then ignores. Grouped by direction:

- host -> worker commands: :class:`Initialize`, :class:`CallCreateModelState` (with
  :class:`ParamHandle` and :class:`OtherModelHandle`), answered data: :class:`ProvideData`;
- worker -> host messages: :class:`ModelSessionInitialized`, :class:`ProvideStateData`,
  :class:`CallResult` (an :class:`ExceptionError` when the model raised);
- worker -> host data events: :class:`RequestData`, :class:`Shuffle`.

Only the standard library is imported here: the worker must start without numpy or grpc.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from runtime import protocol
from runtime.protocol import Buffer

#: Longest JSON document of a data event (``requestData``, ``shuffle``) the host accepts.
MAX_DATA_EVENT_JSON = 8 << 10
#: Bytes of a data event frame before its JSON (kind, u64 length).
DATA_EVENT_HEAD = 9
#: Longest state key name a worker may provide.
MAX_KEY_NAME_CHARS = protocol.MAX_STATE_KEY_NAME_CHARS
#: Exception details are cut to this many characters (the note included), on both sides.
MAX_EXCEPTION_DETAILS = protocol.MAX_EXCEPTION_DETAILS
_U32_MAX = (1 << 32) - 1
_I64_MAX = (1 << 63) - 1


class MessageError(ValueError):
    """A document does not have the shape the protocol gives it."""


class BadParams(MessageError):
    """A known command whose params break the protocol: answered with an error, not run."""

    def __init__(self, method: str, command_id: str | None, reason: str) -> None:
        super().__init__(reason)
        self.method = method
        self.id = command_id


def shown(value: object, limit: int = 64) -> str:
    """``repr(value)`` cut to ``limit`` characters: safe to put into an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def cut(text: str, limit: int = MAX_EXCEPTION_DETAILS, where: str = "") -> str:
    """``text`` if it fits in ``limit`` characters, else its head plus a note; never longer."""
    if len(text) <= limit:
        return text
    kept = limit
    for _ in range(3):  # the note's length depends on the number it holds
        note = f" (cut: {len(text) - kept} more characters{where})"
        kept = max(0, limit - len(note))
    return (text[:kept] + note)[:limit]


def key_name_reason(name: object) -> str | None:
    """Why ``name`` cannot name a state key (None: it can); the launcher's rule, word for word."""
    if not isinstance(name, str) or not name or not name.strip():
        return "a state key name must not be empty"
    if len(name) > MAX_KEY_NAME_CHARS:
        return f"a state key name has {len(name)} characters; at most {MAX_KEY_NAME_CHARS}"
    if not name.isprintable():
        return "a state key name must be printable characters (no control characters)"
    return None


# ---- field checks ---------------------------------------------------------------------------


def _obj(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MessageError(f"{where} is not an object")
    return value


def _str(doc: dict[str, Any], key: str, where: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise MessageError(f"{where}.{key} is missing or not a string")
    return value


def _int(doc: dict[str, Any], key: str, where: str, maximum: int = _I64_MAX) -> int:
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise MessageError(f"{where}.{key} is {shown(value)}, not a whole number 0..{maximum}")
    return value


def _list(doc: dict[str, Any], key: str, where: str) -> list[Any]:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise MessageError(f"{where}.{key} is not a list")
    return value


def _exact_keys(doc: dict[str, Any], keys: frozenset[str], where: str) -> None:
    extra = doc.keys() - keys
    if extra:
        raise MessageError(f"{where} has unknown fields {shown(sorted(extra))}")


# ---- host -> worker -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Initialize:
    """Load the model file at ``path``; answered by :class:`ModelSessionInitialized`."""

    METHOD: ClassVar[str] = "initialize"
    path: str

    def encode(self) -> bytes:
        return protocol.encode_command(self.METHOD, {"path": self.path})

    @classmethod
    def parse(cls, params: dict[str, Any]) -> Initialize:
        return cls(_str(params, "path", cls.METHOD))


@dataclass(frozen=True, slots=True)
class ParamHandle:
    """A lazily read list of ``amount`` elements, served by the host as ``dataset``."""

    name: str
    dataset: str
    amount: int
    total_byte_size: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dataset": self.dataset,
            "amount": self.amount,
            "totalByteSize": self.total_byte_size,
        }

    @classmethod
    def parse(cls, doc: object, where: str) -> ParamHandle:
        d = _obj(doc, where)
        return cls(
            _str(d, "name", where),
            _str(d, "dataset", where),
            _int(d, "amount", where),
            _int(d, "totalByteSize", where),
        )


@dataclass(frozen=True, slots=True)
class OtherModelHandle:
    """A mounted model: where its files are, and its state's keys as handles."""

    id: str
    mount_path: str
    state: tuple[ParamHandle, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "mountPath": self.mount_path,
            "state": [p.to_json() for p in self.state],
        }

    @classmethod
    def parse(cls, doc: object, where: str) -> OtherModelHandle:
        d = _obj(doc, where)
        state = _list(d, "state", where)
        return cls(
            _str(d, "id", where),
            _str(d, "mountPath", where),
            tuple(ParamHandle.parse(p, f"{where}.state[{i}]") for i, p in enumerate(state)),
        )


@dataclass(frozen=True, slots=True)
class CallCreateModelState:
    """Run ``createModelState``; answered by a :class:`CallResult` with the same ``id``."""

    METHOD: ClassVar[str] = "callCreateModelState"
    id: str
    params: tuple[ParamHandle, ...]
    other_models: tuple[OtherModelHandle, ...] = ()

    def encode(self) -> bytes:
        return protocol.encode_command(
            self.METHOD,
            {
                "id": self.id,
                "params": [p.to_json() for p in self.params],
                "otherModels": [m.to_json() for m in self.other_models],
            },
        )

    @classmethod
    def parse(cls, params: dict[str, Any]) -> CallCreateModelState:
        where = cls.METHOD
        handles = _list(params, "params", where)
        others = _list(params, "otherModels", where)
        return cls(
            _str(params, "id", where),
            tuple(ParamHandle.parse(p, f"params[{i}]") for i, p in enumerate(handles)),
            tuple(OtherModelHandle.parse(m, f"otherModels[{i}]") for i, m in enumerate(others)),
        )


@dataclass(frozen=True, slots=True)
class UnknownCommand:
    """A command this worker does not know: answered with an error when it has an id."""

    method: str
    id: str | None


Command = Initialize | CallCreateModelState | UnknownCommand
_COMMANDS: dict[str, Any] = {c.METHOD: c for c in (Initialize, CallCreateModelState)}


def parse_command(doc: object) -> Command:
    """A command document ``{"method": NAME, "params": {...}}``."""
    method = doc.get("method") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or not isinstance(method, str):
        raise MessageError('command is not an object with a string "method"')
    params = _obj(doc.get("params", {}), f"command {shown(method)}: params")
    command_id = params.get("id") if isinstance(params.get("id"), str) else None
    kind = _COMMANDS.get(method)
    if kind is None:
        return UnknownCommand(method, command_id)
    try:
        parsed: Command = kind.parse(params)
    except MessageError as e:
        raise BadParams(method, command_id, str(e)) from None
    return parsed


@dataclass(frozen=True, slots=True)
class ProvideData:
    """The host's answer to a :class:`RequestData`: one blob per element."""

    request_id: int
    blobs: Sequence[Buffer]

    def encode(self) -> list[Buffer]:
        return protocol.encode_provide_data(self.request_id, self.blobs)

    @staticmethod
    def header(request_id: int, count: int) -> bytes:
        """The frame's head, for a host that streams each blob (``protocol.blob_header``)."""
        return protocol.provide_data_header(request_id, count)


# ---- worker -> host: messages ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExceptionError:
    """The model raised: ``details`` is its traceback, at most 10,000 characters."""

    details: str
    code: str = "exception"

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "details": self.details}

    @classmethod
    def parse(cls, doc: object) -> ExceptionError:
        """Any ``error`` value a worker sends; text cut to the limit here, on the host."""
        if isinstance(doc, dict) and isinstance(doc.get("details"), str):
            code = doc.get("code")
            return cls(cut(doc["details"]), cut(code, 64) if isinstance(code, str) else "exception")
        return cls(f"the worker reported an error without details: {shown(doc, 1000)}")


_ERROR_ONLY = frozenset({"error"})
_RESULT_KEYS = frozenset({"id", "result"})
_EVENT_KEYS = frozenset({"event", "params"})


def _error_of(doc: dict[str, Any]) -> ExceptionError | None:
    error = doc.get("error")
    return None if error is None else ExceptionError.parse(error)


def _with_error(error: ExceptionError | None) -> dict[str, Any]:
    return {} if error is None else {"error": error.to_json()}


@dataclass(frozen=True, slots=True)
class ModelSessionInitialized:
    """Answer to :class:`Initialize`: ``error`` is None when the model loaded."""

    EVENT: ClassVar[str] = "modelSessionInitialized"
    error: ExceptionError | None = None

    def encode(self) -> list[Buffer]:
        return protocol.encode_message({"event": self.EVENT, "params": _with_error(self.error)})

    @classmethod
    def parse(cls, params: dict[str, Any]) -> ModelSessionInitialized:
        _exact_keys(params, _ERROR_ONLY, cls.EVENT)
        return cls(_error_of(params))


@dataclass(frozen=True, slots=True)
class ProvideStateData:
    """State data of ``command_id``: one blob follows per name, in order."""

    EVENT: ClassVar[str] = "provideStateData"
    _KEYS: ClassVar[frozenset[str]] = frozenset({"commandId", "names"})
    command_id: str
    names: tuple[str, ...]

    def encode(self, blobs: Sequence[Buffer]) -> list[Buffer]:
        params = {"commandId": self.command_id, "names": list(self.names)}
        return protocol.encode_message({"event": self.EVENT, "params": params}, blobs)

    @classmethod
    def parse(cls, params: dict[str, Any]) -> ProvideStateData:
        where = cls.EVENT
        _exact_keys(params, cls._KEYS, where)
        command_id = _str(params, "commandId", where)
        names = _list(params, "names", where)
        if len(names) > protocol.MAX_STATE_KEYS:
            raise MessageError(f"{where}: {len(names)} names, over {protocol.MAX_STATE_KEYS}")
        for name in names:
            reason = key_name_reason(name)
            if reason is not None:
                raise MessageError(f"{where}: {reason}: {shown(name)}")
        if len(set(names)) != len(names):
            raise MessageError(f"{where}: a key is named twice in one event")
        return cls(command_id, tuple(names))


@dataclass(frozen=True, slots=True)
class CallResult:
    """The end of the command ``id``: ``error`` is None on success."""

    id: str
    error: ExceptionError | None = None

    def encode(self) -> list[Buffer]:
        return protocol.encode_message({"id": self.id, "result": _with_error(self.error)})

    @classmethod
    def parse(cls, doc: dict[str, Any]) -> CallResult:
        _exact_keys(doc, _RESULT_KEYS, "a result")
        command_id = doc.get("id")
        if not isinstance(command_id, str):
            raise MessageError(f"a result for the call id {shown(command_id)}, not a string")
        result = _obj(doc.get("result"), "a result's result")
        _exact_keys(result, _ERROR_ONLY, "a result's result")
        return cls(command_id, _error_of(result))


WorkerMessage = ModelSessionInitialized | ProvideStateData | CallResult
_EVENTS: dict[str, Any] = {e.EVENT: e for e in (ModelSessionInitialized, ProvideStateData)}


def parse_message(doc: object) -> WorkerMessage:
    """A message frame's JSON: an event ``{"event", "params"}`` or a result ``{"id", "result"}``."""
    d = _obj(doc, "a message")
    if "event" not in d:
        return CallResult.parse(d)
    _exact_keys(d, _EVENT_KEYS, "an event")
    kind = _EVENTS.get(d["event"]) if isinstance(d["event"], str) else None
    if kind is None:
        raise MessageError(f"unknown event {shown(d['event'])}")
    parsed: WorkerMessage = kind.parse(_obj(d.get("params", {}), f"event {kind.EVENT}: params"))
    return parsed


# ---- worker -> host: data events ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestData:
    """Ask for elements ``start_index ..`` (at most ``amount``) of ``dataset``."""

    EVENT: ClassVar[str] = "requestData"
    _KEYS: ClassVar[frozenset[str]] = frozenset(
        {"event", "requestId", "dataset", "startIndex", "amount"}
    )
    request_id: int
    dataset: str
    start_index: int
    amount: int

    def encode(self) -> bytes:
        return protocol.encode_data_event(
            {
                "event": self.EVENT,
                "requestId": self.request_id,
                "dataset": self.dataset,
                "startIndex": self.start_index,
                "amount": self.amount,
            }
        )

    @classmethod
    def parse(cls, doc: dict[str, Any]) -> RequestData:
        _exact_keys(doc, cls._KEYS, cls.EVENT)
        return cls(
            _int(doc, "requestId", cls.EVENT, _U32_MAX),
            _str(doc, "dataset", cls.EVENT),
            _int(doc, "startIndex", cls.EVENT),
            _int(doc, "amount", cls.EVENT),
        )


@dataclass(frozen=True, slots=True)
class Shuffle:
    """Shuffle ``datasets`` (of equal amounts) with one shared random permutation."""

    EVENT: ClassVar[str] = "shuffle"
    _KEYS: ClassVar[frozenset[str]] = frozenset({"event", "datasets"})
    datasets: tuple[str, ...]

    def encode(self) -> bytes:
        return protocol.encode_data_event({"event": self.EVENT, "datasets": list(self.datasets)})

    @classmethod
    def parse(cls, doc: dict[str, Any]) -> Shuffle:
        _exact_keys(doc, cls._KEYS, cls.EVENT)
        names = doc.get("datasets")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise MessageError("shuffle: 'datasets' must be a non-empty list of dataset names")
        return cls(tuple(names))


DataEvent = RequestData | Shuffle
_DATA_EVENTS: dict[str, Any] = {e.EVENT: e for e in (RequestData, Shuffle)}


def parse_data_event(doc: object) -> DataEvent:
    """A data event frame's JSON; unknown events and unknown fields are refused."""
    d = _obj(doc, "a data event")
    event = d.get("event")
    kind = _DATA_EVENTS.get(event) if isinstance(event, str) else None
    if kind is None:
        raise MessageError(f"unknown data event {shown(event)}")
    parsed: DataEvent = kind.parse(d)
    return parsed
