"""List the processes it can see, then try to kill its parent and pid 1."""

import json
import os
import signal

pids = sorted(int(name) for name in os.listdir("/proc") if name.isdigit())
attempts = {}
for target in {os.getppid(), 1}:
    try:
        os.kill(target, signal.SIGKILL)
        attempts[str(target)] = "sent"
    except OSError as exc:
        attempts[str(target)] = f"error: {exc.strerror}"
print(json.dumps({"pids": pids, "ppid": os.getppid(), "kill": attempts}), flush=True)
