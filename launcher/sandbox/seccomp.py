"""A seccomp-BPF filter: no non-Unix sockets, no namespace, mount, tracing or kernel-key calls.

Refused calls fail with EPERM (a model sees an ordinary error, not a crash); ``clone3``
answers ENOSYS so that libc falls back to ``clone``, whose flags the filter can inspect.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

from launcher.sandbox import libc

_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}

# Denied with EPERM: (x86_64 number, aarch64 number).
_DENIED = {
    "unshare": (272, 97),
    "setns": (308, 268),
    "mount": (165, 40),
    "umount2": (166, 39),
    "pivot_root": (155, 41),
    "chroot": (161, 51),
    "ptrace": (101, 117),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "bpf": (321, 280),
    "keyctl": (250, 219),
    "add_key": (248, 217),
    "request_key": (249, 218),
    "perf_event_open": (298, 241),
    "kexec_load": (246, 104),
    "init_module": (175, 105),
    "finit_module": (313, 273),
    "delete_module": (176, 106),
    "open_by_handle_at": (304, 265),
    "userfaultfd": (323, 282),
    "open_tree": (428, 428),
    "move_mount": (429, 429),
    "fsopen": (430, 430),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "fspick": (433, 433),
    "mount_setattr": (442, 442),
}
_SOCKET = (41, 198)
_CLONE = (56, 220)
_CLONE3 = (435, 435)
_AF_UNIX = 1
_NAMESPACE_FLAGS = (
    libc.CLONE_NEWNS
    | libc.CLONE_NEWUTS
    | libc.CLONE_NEWIPC
    | libc.CLONE_NEWUSER
    | libc.CLONE_NEWPID
    | libc.CLONE_NEWNET
    | libc.CLONE_NEWCGROUP
)

# BPF opcodes.
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
_RET_ALLOW = 0x7FFF0000
_RET_KILL = 0x80000000
_RET_ERRNO = 0x00050000
_NR, _ARCH, _ARG0 = 0, 4, 16


class _Filter(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def supported() -> bool:
    return platform.machine() in _AUDIT_ARCH


def build() -> bytes:
    """The filter program for this machine's architecture."""
    machine = platform.machine()
    col = 0 if machine == "x86_64" else 1
    eperm = _RET_ERRNO | errno.EPERM
    prog = [_op(_LD_W_ABS, _ARCH), _op(_JEQ_K, _AUDIT_ARCH[machine], 1, 0), _op(_RET_K, _RET_KILL)]
    prog.append(_op(_LD_W_ABS, _NR))
    if machine == "x86_64":
        # x32 system calls share the architecture value but carry this bit.
        prog += [_op(_JGE_K, 0x40000000, 0, 1), _op(_RET_K, eperm)]
    for numbers in _DENIED.values():
        prog += [_op(_JEQ_K, numbers[col], 0, 1), _op(_RET_K, eperm)]
    prog += [_op(_JEQ_K, _CLONE3[col], 0, 1), _op(_RET_K, _RET_ERRNO | errno.ENOSYS)]
    # socket(domain, ...): only AF_UNIX.
    prog += [
        _op(_JEQ_K, _SOCKET[col], 0, 3),
        _op(_LD_W_ABS, _ARG0),
        _op(_JEQ_K, _AF_UNIX, 1, 0),
        _op(_RET_K, eperm),
        _op(_LD_W_ABS, _NR),
    ]
    # clone(flags, ...): no new namespaces.
    prog += [
        _op(_JEQ_K, _CLONE[col], 0, 3),
        _op(_LD_W_ABS, _ARG0),
        _op(_JSET_K, _NAMESPACE_FLAGS, 0, 1),
        _op(_RET_K, eperm),
    ]
    prog.append(_op(_RET_K, _RET_ALLOW))
    return b"".join(prog)


def install() -> None:
    """Install the filter on the calling thread (no_new_privs must be set, or root)."""
    program = build()
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _Filter(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    libc.prctl_ptr(
        libc.PR_SET_SECCOMP,
        libc.SECCOMP_MODE_FILTER,
        ctypes.cast(ctypes.pointer(fprog), ctypes.c_void_p),
    )
