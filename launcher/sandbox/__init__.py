"""The sandbox: builds isolated workers from a WorkerPlan, strongest available layers first.

``create_sandbox(config)`` detects every layer once, logs the result (logger
``launcher.sandbox``) and returns a Sandbox whose ``layers()`` says "on" or "off: <reason>"
for each.
"""

from __future__ import annotations

from launcher.sandbox.config import LAYER_NAMES, SandboxConfig
from launcher.sandbox.layered import create_sandbox
from launcher.sandbox.types import Sandbox, Termination, WorkerPlan, WorkerProcess

__all__ = [
    "LAYER_NAMES",
    "Sandbox",
    "SandboxConfig",
    "Termination",
    "WorkerPlan",
    "WorkerProcess",
    "create_sandbox",
]
