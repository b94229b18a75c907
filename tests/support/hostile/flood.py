"""Write MEBIBYTES MiB to stdout and as much to stderr, then a last line, then exit 0."""

import os
import sys

block = b"x" * 1023 + b"\n"
for _ in range(int(sys.argv[1]) * 1024):
    os.write(1, block)
    os.write(2, block)
os.write(1, b"the last line\n")
