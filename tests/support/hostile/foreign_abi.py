"""Make one system call through a foreign ABI on x86_64 (``x32``: getpid with the x32 bit;
``i386``: getpid through ``int 0x80`` from a code page); the filter must kill the process."""

import ctypes
import mmap
import platform
import sys

if platform.machine() != "x86_64":
    print("not x86_64", flush=True)
    sys.exit(3)
libc = ctypes.CDLL(None, use_errno=True)
print("calling", flush=True)
if sys.argv[1] == "x32":
    libc.syscall(ctypes.c_long(0x40000000 | 39))
else:
    code = bytes([0xB8, 20, 0, 0, 0, 0xCD, 0x80, 0xC3])  # mov eax, 20; int 0x80; ret
    page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(code)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    ctypes.CFUNCTYPE(ctypes.c_int)(address)()
print("survived the foreign call", flush=True)
