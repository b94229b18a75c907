"""Make one x32 system call (getpid with the x32 bit); the filter must kill the process."""

import ctypes
import platform
import sys

if platform.machine() != "x86_64":
    print("not x86_64", flush=True)
    sys.exit(3)
libc = ctypes.CDLL(None, use_errno=True)
print("calling", flush=True)
libc.syscall(ctypes.c_long(0x40000000 | 39))
print("survived the x32 call", flush=True)
