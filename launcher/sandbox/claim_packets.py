"""The packets a spare sandbox is claimed with: one recipe and its fds per SOCK_SEQPACKET
packet, between the zygote, the spare's keeper, its init and its waiting worker."""

from __future__ import annotations

import array
import errno
import os
import socket

#: The largest recipe a spare takes (a larger one gets a keeper forked from scratch).
MAX_RECIPE = 1024 * 1024
#: Room for a packet's own header beside its recipe (the waiting worker's root check).
_HEADER = 64
_MAX_FDS = 16
_BUFFER = 4 * 1024 * 1024


def pair() -> tuple[socket.socket, socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for sock in (ours, theirs):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUFFER)
    return ours, theirs


def send(sock: socket.socket, data: bytes, fds: list[int]) -> None:
    sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])


def receive(sock: socket.socket) -> tuple[bytes, list[int]]:
    """One packet and its fds (``b""``: the other side closed); OSError for a packet or fd
    list cut short (never a job with some of its cgroup joins silently missing)."""
    fds = array.array("i")
    data, ancillary, flags, _addr = sock.recvmsg(
        MAX_RECIPE + _HEADER + 1, socket.CMSG_SPACE(4 * _MAX_FDS)
    )
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    if flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC):
        for fd in fds:
            os.close(fd)
        raise OSError(errno.EMSGSIZE, "a spare's claim was cut short")
    return data, list(fds)
