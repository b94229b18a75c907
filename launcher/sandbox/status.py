"""Decoding a wait status into a Termination (exit code vs signal name)."""

from __future__ import annotations

import os
import signal

from launcher.sandbox.types import Termination


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def from_wait_status(status: int, oom: bool = False) -> Termination:
    """A raw ``waitpid`` status as a Termination."""
    if os.WIFSIGNALED(status):
        return Termination(signal=signal_name(os.WTERMSIG(status)), oom=oom)
    return Termination(exit_code=os.waitstatus_to_exitcode(status), oom=oom)
