"""Try to read and write the paths given (``read:PATH`` / ``write:PATH``); report each."""

import json
import sys

report = {}
for arg in sys.argv[1:]:
    mode, _, path = arg.partition(":")
    try:
        if mode == "read":
            with open(path, "rb") as handle:
                handle.read(16)
        else:
            with open(path, "w") as handle:
                handle.write("pwned")
        report[arg] = "ok"
    except OSError as exc:
        report[arg] = f"error: {exc.strerror}"
print(json.dumps(report), flush=True)
