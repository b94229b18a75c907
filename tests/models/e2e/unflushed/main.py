"""Prints without flushing, as most models do: every line must still reach the job's log."""

import sys

print("unflushed: imported")


def create(options):
    print("unflushed: stdout line")
    print("unflushed: stderr line", file=sys.stderr)
    print("unflushed: no newline at the end", end="")
    options.state_provider.provide("k", b"v")


model = {"createModelState": create}
