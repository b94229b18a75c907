"""Reports whether numpy was already imported when main.py ran (true in a forked worker)."""
import sys

PRELOADED = "numpy" in sys.modules

model = {"createModelState": lambda o: o.state_provider.provide("preloaded", str(PRELOADED).encode())}
