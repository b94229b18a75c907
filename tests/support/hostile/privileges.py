"""Report the process's privileges and try the calls the seccomp filter must refuse."""

import ctypes
import json
import os
import socket

libc = ctypes.CDLL(None, use_errno=True)
status = dict(
    line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line
)
report: dict[str, object] = {
    "uid": os.getuid(),
    "CapEff": status["CapEff"].strip(),
    "CapBnd": status["CapBnd"].strip(),
    "NoNewPrivs": status["NoNewPrivs"].strip(),
    "Seccomp": status["Seccomp"].strip(),
}


def errno_of(result: int) -> str:
    return "ok" if result == 0 else os.strerror(ctypes.get_errno())


report["unshare"] = errno_of(libc.unshare(0x10000000))  # CLONE_NEWUSER
report["mount"] = errno_of(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))
report["ptrace"] = errno_of(libc.ptrace(16, 1, None, None))  # PTRACE_ATTACH to init
for family in ("AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET"):
    try:
        socket.socket(getattr(socket, family), socket.SOCK_RAW if family == "AF_PACKET" else 2)
        report[family] = "ok"
    except OSError as exc:
        report[family] = exc.strerror
left, right = socket.socketpair(socket.AF_UNIX)
report["AF_UNIX"] = "ok"
try:
    with open("/tmp/fill", "wb") as handle:
        for _ in range(64):
            handle.write(b"\0" * (1024 * 1024))
    report["tmp_64MiB"] = "ok"
except OSError as exc:
    report["tmp_64MiB"] = exc.strerror
print(json.dumps(report), flush=True)
