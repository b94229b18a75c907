"""``launcher serve`` flags that bound what one client may hold: intake streams and calls.

Defaults live in ``launcher.rules``; each flag maps to one ``ServeOptions`` field.
"""

from __future__ import annotations

import argparse
from typing import Any

from launcher import rules


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer of at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}")
    return value


#: flag, ServeOptions field, parser, default, help
_FLAGS: tuple[tuple[str, str, Any, Any, str], ...] = (
    (
        "--intake-idle-seconds",
        "intake_idle_seconds",
        _seconds,
        rules.DEFAULT_INTAKE_IDLE_SECONDS,
        "end a createState request stream that sends nothing for S seconds",
    ),
    (
        "--max-request-bytes",
        "max_request_bytes",
        _count,
        rules.DEFAULT_MAX_REQUEST_BYTES,
        "inline param bytes one createState request may send",
    ),
    (
        "--max-tensors-per-param",
        "max_tensors_per_param",
        _count,
        rules.DEFAULT_MAX_TENSORS_PER_PARAM,
        "tensors one inline param may hold",
    ),
    (
        "--max-concurrent-intakes",
        "max_concurrent_intakes",
        _count,
        rules.DEFAULT_MAX_CONCURRENT_INTAKES,
        "createState requests received at once (past it: too_many_requests)",
    ),
    (
        "--max-tenant-intakes",
        "max_tenant_intakes",
        _count,
        rules.DEFAULT_MAX_TENANT_INTAKES,
        "createState requests one tenant may have being received at once",
    ),
    (
        "--max-concurrent-rpcs",
        "max_concurrent_rpcs",
        _count,
        rules.DEFAULT_MAX_CONCURRENT_RPCS,
        "gRPC calls served at once (past it: too_many_requests)",
    ),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    for flag, field, parse, default, text in _FLAGS:
        p.add_argument(
            flag, dest=field, type=parse, default=default, help=f"{text} (default {default})"
        )


def options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``ServeOptions`` fields of these flags."""
    return {field: getattr(args, field) for _, field, _, _, _ in _FLAGS}
