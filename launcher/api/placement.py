"""Specs the executor can never place are refused at the API, as ``invalid_parameter``."""

from __future__ import annotations

from launcher.api.validation import spec_from_proto
from launcher.errors import invalid
from launcher.executors.base import Executor, SpecRefused
from launcher.spec import LauncherSpec
from launcher.v1 import common_pb2


def placeable_spec(
    path: str, message: common_pb2.LauncherSpec, executor: Executor | None
) -> LauncherSpec:
    """The validated spec at ``path``; refused when ``executor`` could never place it."""
    spec = spec_from_proto(path, message)
    if executor is not None:
        try:
            executor.check_spec(spec)
        except SpecRefused as e:
            raise invalid(f"{path}.{e.field}", e.reason) from None
    return spec
