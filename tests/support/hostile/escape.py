"""Leave a grandchild behind with setsid + double fork (tagged with argv[1]), then either
wait forever (``stay``) or end at once (``leave``)."""

import os
import subprocess
import sys
import time

tag, mode = sys.argv[1], sys.argv[2]
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(3600)", tag])
    os._exit(0)
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)", tag])
time.sleep(0.3)
print("escaped", flush=True)
if mode == "stay":
    time.sleep(3600)
