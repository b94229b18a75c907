"""Exit with the code given, or die by the signal named (``exit_with.py 3`` / ``SIGSEGV``)."""

import os
import signal
import sys

arg = sys.argv[1]
print("about to end with", arg, flush=True)
if arg.startswith("SIG"):
    os.kill(os.getpid(), signal.Signals[arg])
sys.exit(int(arg))
