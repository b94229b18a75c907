"""``launcher run-job``: the node side of one worker on a Ray cluster (job JSON on stdin)."""

from __future__ import annotations

import argparse


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    commands.add_parser(
        "run-job",
        help="(on a Ray node, started by the Ray executor) run one sandboxed worker for the hub",
        description="Reads one job (JSON) on stdin, starts its sandboxed worker here and "
        "relays the worker protocol to the hub that sent it.",
    )


def run(args: argparse.Namespace) -> int:
    from launcher.executors.ray.node import main

    return main([])
