"""Fault injection for crash-safety tests: named points where the launcher can be made to die.

``point(name)`` does nothing unless the launcher was started with ``LAUNCHER_FAULT=<name>``; then
the process that reaches that point kills itself with SIGKILL, the one signal that leaves no
chance to clean up, so a test sees exactly what a power cut or an OOM kill would leave behind.
The variable is read once, at import; an unknown name refuses to start (a typo would otherwise
silently test nothing). Reaching a point costs one comparison.
"""

from __future__ import annotations

import os
import signal

ENV = "LAUNCHER_FAULT"

#: Every point, where it sits, and what a crash there must leave.
POINTS: dict[str, str] = {
    "upload_chunk": "intake stored a chunk of an inline param (job not accepted yet)",
    "create_state": "the worker is running createModelState (job accepted, nothing committed)",
    "keys_written": "a state key is finished on disk and the next one begins",
    "before_sql_commit": "every key is fsync'd and in place, the state's rows are not committed",
    "after_commit": "the state is committed, the success response is not sent yet",
}


def _armed_from_env() -> str | None:
    name = os.environ.get(ENV) or None
    if name is not None and name not in POINTS:
        raise ValueError(f"{ENV}={name!r} names no fault point; known points: {', '.join(POINTS)}")
    return name


_armed = _armed_from_env()


def point(name: str) -> None:
    """Die here (SIGKILL) if this is the armed point; otherwise return at once."""
    if name == _armed:
        os.kill(os.getpid(), signal.SIGKILL)
