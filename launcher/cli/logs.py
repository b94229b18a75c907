"""``launcher logs MODEL STATE_ID [--follow]``: a job's log, and following one from create-state.

Each line prints as ``HH:MM:SS.mmm STREAM text`` (local time; stream ``stdout``, ``stderr`` or
``launcher``); ``--json`` prints one JSON object per line instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from launcher.cli.output import dumps, exit_code
from launcher.client import LauncherClient, LauncherConnectionError


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "logs", help="show a job's log: the model's output, the launcher's lines"
    )
    p.add_argument("model_id", metavar="MODEL")
    p.add_argument("state_id", metavar="STATE_ID")
    p.add_argument(
        "--follow", "-f", action="store_true", help="keep showing new lines until the job ends"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(handler=None, run=run)


def format_line(line: dict[str, Any]) -> str:
    stamp = line["timestamp"] / 1000
    clock = (
        time.strftime("%H:%M:%S", time.localtime(stamp)) + f".{int(line['timestamp']) % 1000:03d}"
    )
    return f"{clock} {line['stream']:<8} {line['text']}"


def _printer(out: TextIO, as_json: bool) -> Callable[[dict[str, Any]], None]:
    def show(line: dict[str, Any]) -> None:
        print(json.dumps(line) if as_json else format_line(line), file=out, flush=True)

    return show


def run(client: LauncherClient, args: argparse.Namespace) -> int:
    show = _printer(sys.stdout, args.json)
    if not args.follow:
        response = client.model.get_state_logs(args.model_id, args.state_id)
        if "error" in response:
            print(dumps(response))
            return exit_code(response)
        for line in response["result"]["lines"]:
            show(line)
        return 0
    for item in client.model.get_state_logs(args.model_id, args.state_id, follow=True):
        if "error" in item:
            print(dumps(item))
            return exit_code(item)
        show(item)
    return 0


class LogFollower:
    """Follows a job's log in a thread, handing the model's lines (not the launcher's: the
    phase display shows those) to ``show`` as they come, until the job ends."""

    def __init__(
        self, client: LauncherClient, model_id: str, state_id: str, show: Callable[[str], None]
    ) -> None:
        self._client = client
        self._model_id = model_id
        self._state_id = state_id
        self._show = show
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            lines = self._client.model.get_state_logs(self._model_id, self._state_id, follow=True)
            for line in lines:
                if "error" in line:
                    return
                if line["stream"] != "launcher" or line["text"].startswith("[... "):
                    self._show(f"{line['stream']}: {line['text']}")
        except LauncherConnectionError:
            return

    def join(self, timeout: float = 5.0) -> None:
        """Wait for the lines still coming (the log ends with the job)."""
        self._thread.join(timeout)
