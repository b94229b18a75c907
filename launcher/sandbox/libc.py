"""The Linux calls Python 3.11 lacks (unshare, mount, pivot_root, prctl), through ctypes.

Only ever called in a single-threaded process (the zygote's children or the exec'd entry
helper): ``unshare(CLONE_NEWUSER)`` and friends refuse multi-threaded callers.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform

_libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWCGROUP = 0x02000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2

PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_SET_SECCOMP = 22
PR_SET_NAME = 15
PR_GET_NAME = 16
SECCOMP_MODE_FILTER = 2

_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def umount2(target: str, flags: int) -> None:
    _check(_libc.umount2(target.encode(), ctypes.c_int(flags)), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    number = _PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise OSError(38, f"pivot_root: unknown syscall number on {platform.machine()}")
    _check(_libc.syscall(ctypes.c_long(number), new_root.encode(), put_old.encode()), "pivot_root")


def prctl(option: int, arg2: int = 0, arg3: int = 0) -> int:
    return _check(
        _libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), 0, 0),
        f"prctl({option})",
    )


_prctl = ctypes.CDLL(None, use_errno=True).prctl  # its own function object: typed once
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def drop_bounding_set(last_cap: int) -> None:
    """Drop every capability 0..``last_cap`` from the bounding set (one typed call each)."""
    for cap in range(last_cap + 1):
        if _prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0:
            if ctypes.get_errno() == errno.EINVAL and cap > 0:
                return  # past the kernel's last capability: none left to drop
            _check(-1, f"prctl(PR_CAPBSET_DROP, {cap})")


def prctl_ptr(option: int, arg2: int, pointer: ctypes.c_void_p) -> None:
    _check(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), pointer, 0, 0), "prctl")


def set_name(name: bytes) -> None:
    """This thread's name (``/proc/PID/comm``, at most 15 bytes)."""
    buffer = ctypes.create_string_buffer(name[:15])
    prctl_ptr(PR_SET_NAME, ctypes.addressof(buffer), ctypes.c_void_p(0))


def get_name() -> bytes:
    buffer = ctypes.create_string_buffer(16)
    prctl_ptr(PR_GET_NAME, ctypes.addressof(buffer), ctypes.c_void_p(0))
    return buffer.value


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_CAP_VERSION_3 = 0x20080522


def capabilities_held() -> bool:
    """Whether this process has any effective capability (CapEff of /proc/self/status)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16) != 0
    return True


def clear_capabilities() -> None:
    """Empty the effective, permitted and inheritable sets (capset with all zero)."""
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname")
