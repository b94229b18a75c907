"""The operator log: text or JSON lines on stderr, the launcher's own loggers only.

``--log-format json`` writes one JSON object per line with stable fields: ``time`` (ISO 8601,
UTC, milliseconds), ``level``, ``logger``, ``message``, and for the lines that carry them
(one per job outcome, one per refused request) the structured ``fields`` merged in
(``event``, ``stateId``, ``model``, ``launcher``, ``tenant``, ``key``, ``outcome``,
``durationsMs``, ``code``...). Libraries (grpc, asyncio, aiohttp) log only warnings and worse
unless ``--log-libraries``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
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


def configure(level: str = "info", fmt: str = "text", libraries: bool = False) -> None:
    """Set up the process's logging once, at ``launcher serve``."""
    if fmt not in FORMATS:
        raise ValueError(f"--log-format must be one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
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
