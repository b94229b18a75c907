"""What ``launcher serve`` makes sure of before it builds anything: it alone owns its data root
and its listen addresses, the root is private, the database is sound, descriptors suffice.

Every refusal is a ``StartupError`` (a ``SystemExit`` with a message): the process exits
non-zero with one clear line, and nothing another launcher owns has been touched.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import resource
import socket
import sqlite3
import stat
from pathlib import Path

log = logging.getLogger("launcher")

LOCK_NAME = "launcher.lock"
#: Raised towards the hard limit, but not past this (an fd table of this size is cheap).
MAX_NOFILE = 1 << 20
#: Folders whose every entry is tightened. Not ``snapshots/``: its frozen code is bound
#: read-only into sandboxes whose workers run as another uid (the 0700 root keeps it private),
#: nor ``models/`` (the operator's) or ``run/`` (the workers' sockets and folders).
_PRIVATE_DIRS = ("states", "datasets", "tmp", "logs")


class StartupError(SystemExit):
    """A clean refusal to start: the message is printed, the exit status is 1."""

    def __init__(self, message: str) -> None:
        super().__init__(f"launcher: {message}")


def lock_root(root: Path) -> int:
    """Take ``<root>/launcher.lock`` (flock, held for the life of the process: the descriptor
    is returned and never closed). A second launcher on the same root is refused."""
    path = root / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as e:
        raise StartupError(f"cannot open the lock file {path}: {e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = ""
        with contextlib.suppress(OSError, ValueError):
            holder = f" (pid {int(os.pread(fd, 32, 0).decode().strip())})"
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise StartupError(
                f"another launcher is already using the data root {root}{holder}; stop it or "
                "pass another --root"
            ) from None
        raise StartupError(f"cannot lock the data root {root}: {e}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def make_private(root: Path) -> None:
    """umask 077 for everything the launcher creates from now on; the root 0700 and what the
    launcher keeps in it tightened to owner-only (logged). ``models/`` is the operator's: its
    contents are left as they are, and symbolic links are never followed."""
    os.umask(0o077)
    tightened = 0
    tightened += _tighten(root, 0o700)
    for entry in root.iterdir():
        if entry.name in ("models", "run", "snapshots"):
            continue
        if entry.is_symlink():
            continue
        if entry.is_dir() and entry.name in _PRIVATE_DIRS:
            for dirpath, dirnames, filenames in os.walk(entry):
                tightened += _tighten(Path(dirpath), 0o700)
                for name in filenames:
                    tightened += _tighten(Path(dirpath, name), 0o600)
                dirnames[:] = [d for d in dirnames if not Path(dirpath, d).is_symlink()]
        else:
            tightened += _tighten(entry, 0o700 if entry.is_dir() else 0o600)
    if tightened:
        log.warning(
            "data root %s: %d files or folders were readable by others; now owner-only",
            root,
            tightened,
        )


def _tighten(path: Path, mode: int) -> int:
    try:
        st = os.lstat(path)
    except OSError:
        return 0
    if stat.S_ISLNK(st.st_mode) or stat.S_IMODE(st.st_mode) & 0o077 == 0:
        return 0
    with contextlib.suppress(OSError):
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o077 & 0o7777 | (mode & 0o700))
        return 1
    return 0


def check_database(path: Path) -> None:
    """A corrupt ``launcher.db`` is refused with a message, not a traceback."""
    if not path.exists():
        return
    try:
        conn = sqlite3.connect(path, timeout=30)
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        raise StartupError(
            f"{path} is not a usable launcher database ({e}); move it away (a new one is "
            "created) or restore it from a backup"
        ) from None
    problems = [r[0] for r in rows if r[0] != "ok"]
    if problems:
        shown = "; ".join(str(p) for p in problems[:3])
        raise StartupError(
            f"{path} failed its integrity check ({shown}); move it away (a new one is "
            "created) or restore it from a backup"
        )


def raise_fd_limit() -> int:
    """RLIMIT_NOFILE's soft limit raised to its hard limit (at most ``MAX_NOFILE``)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = MAX_NOFILE if hard == resource.RLIM_INFINITY else min(hard, MAX_NOFILE)
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    log.info("file descriptor limit: %d", soft)
    return soft


def unix_path(address: str) -> str:
    """The file of ``unix:///abs.sock`` or ``unix:relative.sock``."""
    rest = address[len("unix:") :]
    return "/" + rest.lstrip("/") if rest.startswith("//") else rest


def check_address_free(address: str) -> None:
    """Refuse a listen address another process serves: a live Unix socket (a dead one is
    removed), anything else at that path, or a TCP port already bound."""
    if address.startswith("unix:"):
        _check_unix(unix_path(address))
        return
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host or None, int(port), type=socket.SOCK_STREAM)
    except (OSError, ValueError) as e:
        raise StartupError(f"cannot listen on {address}: {e}") from None
    if int(port) == 0:
        return
    for family, kind, proto, _, sockaddr in infos[:1]:
        probe = socket.socket(family, kind, proto)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(sockaddr)
        except OSError as e:
            raise StartupError(
                f"cannot listen on {address}: {e.strerror or e} (another process uses it?)"
            ) from None
        finally:
            probe.close()


def _check_unix(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise StartupError(f"cannot listen on unix:{path}: {e}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise StartupError(f"cannot listen on unix:{path}: the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        # Nobody listens: the socket of a launcher that died. Safe to replace.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    except OSError as e:
        raise StartupError(f"cannot listen on unix:{path}: {e}") from None
    finally:
        probe.close()
    raise StartupError(
        f"cannot listen on unix:{path}: another process is serving on it; stop it or pass "
        "another --listen"
    )
