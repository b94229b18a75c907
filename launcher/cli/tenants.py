"""``launcher serve`` flags of the tenant caps: phase-limit caps and running jobs per tenant."""

from __future__ import annotations

import argparse
from typing import Any

from launcher.jobs.caps import parse_phase_caps


def _phase_caps(text: str) -> Any:
    try:
        return parse_phase_caps(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-phase-seconds",
        type=_phase_caps,
        metavar="code_startup=S,create_state=S",
        help="cap the phase time limits a model.toml asks for (a model asking for more is "
        "clamped to the cap, and it is logged)",
    )
    p.add_argument(
        "--max-jobs-per-tenant",
        type=_positive,
        metavar="N",
        help="at most N running jobs per tenant (default: half of --max-concurrent-jobs, at "
        "least 1; a launcher without keys has one tenant, never capped)",
    )


def options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "max_phase_seconds": args.max_phase_seconds,
        "max_jobs_per_tenant": args.max_jobs_per_tenant,
    }
