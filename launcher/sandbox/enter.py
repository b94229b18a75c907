"""``python -m launcher.sandbox.enter LAUNCHER_PID``: apply a Recipe (JSON on stdin), then
become the worker's keeper. The exec path for when the zygote is off: a fresh,
single-threaded process can unshare and fork, which the launcher itself must not."""

from __future__ import annotations

import json
import sys

from launcher.sandbox.recipe import Recipe
from launcher.sandbox.tree import run_keeper


def main() -> None:
    recipe = Recipe.from_json(json.loads(sys.stdin.buffer.read()))
    run_keeper(recipe, log_fd=1, parent_pid=int(sys.argv[1]), err_fd=2)


if __name__ == "__main__":
    main()
