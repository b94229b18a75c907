"""``python -m runtime``: the model worker process.

Connects to the host's Unix socket at ``$IPC_PATH``, or adopts the already-connected socket
whose file descriptor number is in ``$IPC_FD``, serves it until the host closes it, and exits 0.
"""

from __future__ import annotations

import os
import socket
import sys


def _connect() -> socket.socket:
    fd = os.environ.get("IPC_FD")
    if fd is not None:
        if not fd.isdigit():
            sys.exit(f"runtime: IPC_FD must be a file descriptor number, not {fd!r}")
        try:
            return socket.socket(fileno=int(fd))
        except OSError as e:
            sys.exit(f"runtime: IPC_FD={fd} is not a usable socket: {e}")
    path = os.environ.get("IPC_PATH")
    if not path:
        sys.exit("runtime: set IPC_PATH (the host's Unix socket) or IPC_FD (a connected socket)")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        sys.exit(f"runtime: cannot connect to IPC_PATH={path!r}: {e}")
    return sock


def main() -> None:
    from runtime.worker import run

    run(_connect())
    # The host is gone: threads the model started must not keep the process alive.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
