"""The warm zygote: a single-threaded, pre-imported interpreter that forks workers.

``python -m launcher.sandbox.zygote FD LAUNCHER_PID``: FD is a SOCK_SEQPACKET Unix socket to
the launcher. Messages are JSON, one per packet:
  launcher → zygote: {"op": "spawn", "id", "recipe"} with the log pipe's write end attached
                     (SCM_RIGHTS); {"op": "kill", "id"}
  zygote → launcher: {"op": "ready", "pid"}; {"op": "started", "id", "pid"};
                     {"op": "exited", "id", "status"} (raw wait status of the keeper).
It dies with the launcher (PR_SET_PDEATHSIG) and exits when the socket closes; its keepers
die with it, and their pid namespaces with them.
"""

from __future__ import annotations

import array
import json
import os
import select
import signal
import socket
import sys

# Pre-imported so that forked workers start with it loaded (the point of the zygote).
import numpy  # noqa: F401

from launcher.sandbox import libc, tree
from launcher.sandbox.recipe import Recipe

MAX_PACKET = 4 * 1024 * 1024

try:
    # The worker and what its first createModelState call needs (asyncio, the model-author
    # API, the tensor codec): imported once here instead of in every worker.
    import asyncio  # noqa: F401

    import runtime._call  # noqa: F401
    import runtime.api  # noqa: F401
    import runtime.tensor  # noqa: F401
    import runtime.worker  # noqa: F401
except ImportError:  # the worker runtime may be absent; workers then import it themselves
    pass


def _send(sock: socket.socket, message: dict[str, object]) -> None:
    sock.sendall(json.dumps(message).encode())


def _receive(sock: socket.socket) -> tuple[dict[str, object] | None, list[int]]:
    fds = array.array("i")
    data, ancillary, _flags, _addr = sock.recvmsg(MAX_PACKET, socket.CMSG_SPACE(4 * 4))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    return (json.loads(data) if data else None), list(fds)


def serve(sock: socket.socket) -> None:
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    keepers: dict[int, str] = {}  # pid → worker id
    by_id: dict[str, int] = {}
    _send(sock, {"op": "ready", "pid": os.getpid()})
    while True:
        ready = select.select([sock.fileno(), wake_r], [], [])[0]
        if wake_r in ready:
            os.read(wake_r, 4096)
            while keepers:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                worker_id = keepers.pop(pid, None)
                if worker_id is not None:
                    del by_id[worker_id]
                    _send(sock, {"op": "exited", "id": worker_id, "status": status})
        if sock.fileno() not in ready:
            continue
        message, fds = _receive(sock)
        if message is None:
            for pid in keepers:
                os.kill(pid, signal.SIGKILL)
            return
        worker_id = str(message["id"])
        if message["op"] == "kill":
            if worker_id in by_id:
                os.kill(by_id[worker_id], signal.SIGTERM)
            continue
        recipe = Recipe.from_json(message["recipe"])  # type: ignore[arg-type]
        zygote_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            sock.detach()
            tree.main_from_zygote(recipe, fds[0], zygote_pid)
        for fd in fds:
            os.close(fd)
        keepers[pid] = worker_id
        by_id[worker_id] = pid
        _send(sock, {"op": "started", "id": worker_id, "pid": pid})


def main() -> None:
    libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
    launcher_pid = int(sys.argv[2])
    if os.getppid() != launcher_pid:
        sys.exit("zygote: the launcher is already gone")
    sock = socket.socket(fileno=int(sys.argv[1]))
    serve(sock)


if __name__ == "__main__":
    main()
