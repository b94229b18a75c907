"""``python -m launcher.sandbox.probe UID STAGING``: which child-side layers work here.

Run once, as a separate single-threaded process (the launcher must not fork). Each layer is
tried in a throw-away child; the answer is one JSON object: layer → "on" | "off: reason".
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
from collections.abc import Callable
from functools import partial

from launcher.sandbox import libc, seccomp

NAMESPACES = {
    "pidns": libc.CLONE_NEWPID,
    "netns": libc.CLONE_NEWNET,
    "mountns": libc.CLONE_NEWNS,
    "ipcns": libc.CLONE_NEWIPC,
    "utsns": libc.CLONE_NEWUTS,
}


def _in_child(action: Callable[[], object]) -> str:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            action()
            message = "on"
        except Exception as exc:
            message = f"off: {exc}"
        os.write(write_fd, message.encode())
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        answer = pipe.read().decode()
    os.waitpid(pid, 0)
    return answer or "off: the probe crashed"


def _mount_tmpfs(staging: str) -> None:
    libc.unshare(libc.CLONE_NEWNS)
    libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)
    libc.mount("tmpfs", staging, "tmpfs", 0, "size=1m")


def _uid(uid: int) -> None:
    if os.geteuid() != 0:
        raise PermissionError("the launcher is not root")
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def _seccomp() -> None:
    if not seccomp.supported():
        raise OSError(errno.ENOSYS, "no filter for this architecture")
    libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
    seccomp.install()
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    except PermissionError:
        return
    raise OSError("the filter did not refuse an AF_INET socket")


def probe(uid: int, staging: str) -> dict[str, str]:
    out = {name: _in_child(partial(libc.unshare, flag)) for name, flag in NAMESPACES.items()}
    if out["mountns"] == "on":
        out["mountns"] = _in_child(lambda: _mount_tmpfs(staging))
    out["uid"] = _in_child(lambda: _uid(uid))
    out["seccomp"] = _in_child(_seccomp)
    out["pdeathsig"] = _in_child(lambda: libc.prctl(libc.PR_SET_PDEATHSIG, 9))
    return out


if __name__ == "__main__":
    print(json.dumps(probe(int(sys.argv[1]), sys.argv[2])))
