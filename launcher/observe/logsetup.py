"""The operator log: text or JSON lines on stderr, the launcher's own loggers only.

``--log-format json`` writes one JSON object per line with stable fields: ``time`` (ISO 8601,
UTC, milliseconds), ``level``, ``logger``, ``message``, and for the lines that carry them
(one per job outcome, one per refused request) the structured ``fields`` merged in
(``event``, ``stateId``, ``model``, ``launcher``, ``tenant``, ``key``, ``outcome``,
``durationsMs``, ``code``...). Libraries (grpc, asyncio, aiohttp) log only warnings and worse
unless ``--log-libraries``.

The lines of the jobs that ended together (``launcher.observe.jobs``) are written with one
system call (``gathered``): a write hands the interpreter lock to whichever thread wants it,
and one per job would put those threads on the next job's path. Every other line is written
at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                out.setdefault(key, value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


#: At most this many lines wait inside ``gathered()``.
GATHER_MAX = 1000
_gathering = threading.local()
_handlers: weakref.WeakSet[GatheringHandler] = weakref.WeakSet()


class GatheringHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that, inside ``gathered()`` on the same thread, writes once at the
    end; elsewhere it writes each line at once."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._waiting: list[str] = []
        _handlers.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self._waiting.append(line)
        if not getattr(_gathering, "depth", 0) or len(self._waiting) >= GATHER_MAX:
            self.flush()

    def flush(self) -> None:
        """Write what waits (also called by ``logging.shutdown`` at exit)."""
        with self.lock:  # type: ignore[union-attr]
            if self._waiting:
                text, self._waiting = "".join(self._waiting), []
                try:
                    self.stream.write(text)
                except Exception:  # a closed or broken stream: the lines are dropped
                    pass
        with contextlib.suppress(Exception):
            super().flush()


@contextlib.contextmanager
def gathered() -> Iterator[None]:
    """The lines logged on this thread inside are written together at its end."""
    _gathering.depth = getattr(_gathering, "depth", 0) + 1
    try:
        yield
    finally:
        _gathering.depth -= 1
        if not _gathering.depth:
            flush()


def flush() -> None:
    """Write the lines still waiting."""
    for handler in list(_handlers):
        handler.flush()


def configure(level: str = "info", fmt: str = "text", libraries: bool = False) -> None:
    """Set up the process's logging once, at ``launcher serve``."""
    if fmt not in FORMATS:
        raise ValueError(f"--log-format must be one of {', '.join(FORMATS)}")
    handler = GatheringHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    # No record field that a line leaves out is gathered (the logging HOWTO's optimization):
    # no caller frame walk, thread, process or multiprocessing name per record.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    wanted = getattr(logging, level.upper())
    # The launcher's loggers at the level asked; everything else at warning unless asked.
    root.setLevel(wanted if libraries else max(wanted, logging.WARNING))
    logging.getLogger("launcher").setLevel(wanted)
    logging.getLogger("runtime").setLevel(wanted)
