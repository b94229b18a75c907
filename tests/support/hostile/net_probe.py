"""Look for a network: list interfaces, connect to 127.0.0.1:PORT."""

import json
import socket
import sys

with open("/proc/net/dev") as handle:
    interfaces = [line.split(":")[0].strip() for line in handle.readlines()[2:]]
report: dict[str, object] = {"interfaces": interfaces}
try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2):
        report["connect"] = "connected"
except OSError as exc:
    report["connect"] = f"refused: {exc}"
print(json.dumps(report), flush=True)
