"""Fork until forking fails; report how many children were made, then end."""

import os
import signal
import sys

made = 0
while made < 10_000:
    try:
        pid = os.fork()
    except OSError as exc:
        print(f"fork failed after {made}: {exc}", flush=True)
        break
    if pid == 0:
        signal.pause()
        os._exit(0)
    made += 1
print(f"children {made}", flush=True)
sys.exit(0)
