"""``launcher create-state``: run a job, showing its phases live, then its outcome."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from launcher.cli import args as parse
from launcher.cli.logs import LogFollower
from launcher.cli.output import PhaseDisplay, describe_outcome, dumps, exit_code
from launcher.client import LauncherClient

DEFAULT_TEMPORARY = "cpus=1,memory=1024"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("create-state", help="create a model state (runs createModelState)")
    p.add_argument("model_id", metavar="MODEL")
    p.add_argument("--name", required=True, help="name of the new state")
    p.add_argument(
        "--param",
        type=parse.param,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="VALUE: @file.npy (one tensor; a non-.npy file holds serialized tensors), "
        "dataset:DATASET_ID/KEY, or JSON (numbers: i64/f64 arrays, strings: string tensors); "
        "repeat a NAME to give it several tensors",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--temporary",
        type=parse.launcher_spec,
        metavar="cpus=N,memory=MiB[,disk=MiB,swap=MiB,gpus=[MODEL:]N]",
        help=f"run on a fresh temporary launcher (default: {DEFAULT_TEMPORARY})",
    )
    where.add_argument("--persistent", metavar="ID", help="run on this persistent launcher")
    p.add_argument(
        "--mount",
        type=parse.mount,
        action="append",
        default=[],
        metavar="MODEL[:STATE|@SNAPSHOT]",
        help=f"make another model readable by this one: {parse.MOUNT_FORMS} (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print only the response, as JSON")
    p.add_argument(
        "--follow-logs",
        action="store_true",
        help="show the model's output (stdout, stderr) live under the phases",
    )
    p.set_defaults(handler=None, run=run)


def _location(args: argparse.Namespace) -> dict[str, Any]:
    if args.persistent:
        return {"type": "persistentLauncher", "persistentLauncherId": args.persistent}
    spec = args.temporary or parse.launcher_spec(DEFAULT_TEMPORARY)
    return {"type": "temporaryLauncher", "spec": spec}


def run(client: LauncherClient, args: argparse.Namespace) -> int:
    request: dict[str, Any] = {
        "model_id": args.model_id,
        "name": args.name,
        "params": parse.group_params(args.param),
        "execution_location": _location(args),
        "mount_models": args.mount or None,
    }
    if args.json:
        response = client.model.create_state(**request)
        print(dumps(response))
        return exit_code(response)
    display = PhaseDisplay(sys.stdout, live=sys.stdout.isatty())
    follower: LogFollower | None = None
    response = {}
    try:
        for item in client.model.create_state_stream(**request, accepted=True):
            if item.get("event") == "accepted":
                # At once: a connection lost later still leaves the id to wait for or read.
                display.note(f"accepted {item['stateId']}")
                if args.follow_logs:
                    follower = LogFollower(client, args.model_id, item["stateId"], display.note)
            elif "event" in item:
                display.event(item)
            else:
                response = item
        if follower is not None:
            follower.join()
    finally:
        display.close(failed=_failed(response), at=_failed_at(response))
    print(describe_outcome(response))
    return exit_code(response)


def _failed(response: dict[str, Any]) -> bool:
    return "failed" in response.get("result", {})


def _failed_at(response: dict[str, Any]) -> str | None:
    """The phase a failed job failed in, when its error says (else: its last phase)."""
    if not _failed(response):
        return None
    at = response["result"]["failed"]["error"].get("at")
    return at if isinstance(at, str) else None
