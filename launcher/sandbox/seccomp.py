"""The worker's seccomp-BPF filter: an ALLOWLIST of what a CPython + numpy worker (and the
official decthings_model runtime) needs; every other call fails with EPERM.

Argument checks: ``socket``/``socketpair`` only for AF_UNIX (no AF_INET*, AF_VSOCK,
AF_NETLINK, AF_PACKET, raw sockets), ``clone`` without namespace flags; ``clone3`` answers
ENOSYS so that libc falls back to ``clone``, whose flags the filter can read. ``DENIED`` lists
the families that must never be allowed (io_uring, whose IORING_OP_SOCKET would bypass the
socket check; namespaces and mounts; tracing and other processes' memory; kernel keys, bpf,
perf, userfaultfd; reboot, kexec, modules, port I/O, device nodes, swap, clocks, quotas,
syslog): they fail through the default like any other unlisted call. A foreign architecture
(i386 through ``int 0x80``, arm32) and x32 calls kill the process.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import platform
import struct

from launcher.sandbox import libc, syscalls

_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_TABLES = {"x86_64": syscalls.X86_64, "aarch64": syscalls.AARCH64}

#: Allowed without argument checks (names absent from an architecture are skipped).
ALLOWED = frozenset(
    """
    read write open close stat fstat lstat poll lseek mmap mprotect munmap brk rt_sigaction
    rt_sigprocmask rt_sigreturn ioctl pread64 pwrite64 readv writev access pipe select
    sched_yield mremap msync mincore madvise shmget shmat shmctl shmdt dup dup2 dup3 pause
    nanosleep getitimer alarm setitimer getpid sendfile connect accept accept4 sendto recvfrom
    sendmsg recvmsg sendmmsg recvmmsg shutdown bind listen getsockname getpeername setsockopt
    getsockopt fork vfork execve execveat exit exit_group wait4 waitid kill tkill tgkill uname
    semget semop semtimedop semctl msgget msgsnd msgrcv msgctl fcntl flock fsync fdatasync
    truncate ftruncate getdents getdents64 getcwd chdir fchdir rename renameat renameat2 mkdir
    mkdirat rmdir creat link linkat unlink unlinkat symlink symlinkat readlink readlinkat chmod
    fchmod fchmodat fchmodat2 chown fchown lchown fchownat umask gettimeofday getrlimit
    setrlimit prlimit64 getrusage sysinfo times getuid getgid geteuid getegid setuid setgid
    setreuid setregid setresuid setresgid getresuid getresgid setfsuid setfsgid getgroups
    setgroups setpgid getppid getpgrp setsid getpgid getsid capget rt_sigpending
    rt_sigtimedwait rt_sigqueueinfo rt_tgsigqueueinfo rt_sigsuspend sigaltstack utime utimes
    utimensat futimesat statfs fstatfs getpriority setpriority sched_setparam sched_getparam
    sched_setscheduler sched_getscheduler sched_get_priority_max sched_get_priority_min
    sched_rr_get_interval sched_setaffinity sched_getaffinity sched_setattr sched_getattr mlock
    munlock prctl arch_prctl sync syncfs gettid readahead time futex futex_waitv
    set_tid_address restart_syscall fadvise64 timer_create timer_settime timer_gettime
    timer_getoverrun timer_delete clock_gettime clock_getres clock_nanosleep epoll_create
    epoll_create1 epoll_wait epoll_pwait epoll_pwait2 epoll_ctl mbind set_mempolicy
    get_mempolicy inotify_init inotify_init1 inotify_add_watch inotify_rm_watch openat openat2
    newfstatat statx faccessat faccessat2 pselect6 ppoll set_robust_list get_robust_list splice
    tee sync_file_range vmsplice signalfd signalfd4 timerfd_create timerfd_settime
    timerfd_gettime eventfd eventfd2 fallocate pipe2 preadv pwritev preadv2 pwritev2 getcpu
    getrandom memfd_create membarrier copy_file_range rseq pidfd_open pidfd_send_signal
    close_range getxattr lgetxattr fgetxattr listxattr llistxattr flistxattr setxattr lsetxattr
    fsetxattr removexattr lremovexattr fremovexattr mq_open mq_unlink mq_timedsend
    mq_timedreceive mq_notify mq_getsetattr pkey_mprotect pkey_alloc pkey_free map_shadow_stack
    ioprio_get
    """.split()
)
#: Never allowed (a test checks that none of these is in ALLOWED).
DENIED = frozenset(
    """
    io_uring_setup io_uring_enter io_uring_register unshare setns mount umount2 pivot_root
    chroot ptrace process_vm_readv process_vm_writev kcmp pidfd_getfd bpf keyctl add_key
    request_key perf_event_open userfaultfd kexec_load kexec_file_load init_module finit_module
    delete_module open_by_handle_at name_to_handle_at open_tree move_mount fsopen fsconfig
    fsmount fspick mount_setattr reboot iopl ioperm mknod mknodat swapon swapoff settimeofday
    clock_settime adjtimex clock_adjtime quotactl quotactl_fd syslog acct sethostname
    setdomainname personality modify_ldt vhangup lookup_dcookie fanotify_init seccomp capset
    move_pages migrate_pages
    """.split()
)
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
_X32_BIT = 0x40000000

# BPF opcodes.
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
_RET_ALLOW = 0x7FFF0000
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_NR, _ARCH, _ARG0 = 0, 4, 16


class _Filter(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def supported(machine: str | None = None) -> bool:
    return (machine or platform.machine()) in _AUDIT_ARCH


def allowed_numbers(machine: str) -> dict[str, int]:
    """The allowlist of ``machine`` as name → number."""
    table = _TABLES[machine]
    return {name: table[name] for name in sorted(ALLOWED) if name in table}


def build(machine: str | None = None) -> bytes:
    """The filter program for ``machine`` (this machine's architecture by default)."""
    machine = machine or platform.machine()
    table = _TABLES[machine]
    eperm = _RET_ERRNO | errno.EPERM
    prog = [
        _op(_LD_W_ABS, _ARCH),
        _op(_JEQ_K, _AUDIT_ARCH[machine], 1, 0),
        _op(_RET_K, _RET_KILL_PROCESS),
        _op(_LD_W_ABS, _NR),
    ]
    if machine == "x86_64":
        # x32 system calls share the architecture value but carry this bit.
        prog += [_op(_JGE_K, _X32_BIT, 0, 1), _op(_RET_K, _RET_KILL_PROCESS)]
    # The hottest calls first (read, write, futex, ... are low numbers on both tables).
    for number in sorted(allowed_numbers(machine).values()):
        prog += [_op(_JEQ_K, number, 0, 1), _op(_RET_K, _RET_ALLOW)]
    prog += [_op(_JEQ_K, table["clone3"], 0, 1), _op(_RET_K, _RET_ERRNO | errno.ENOSYS)]
    # socket(domain, ...) and socketpair(domain, ...): only AF_UNIX.
    for name in ("socket", "socketpair"):
        prog += [
            _op(_JEQ_K, table[name], 0, 4),
            _op(_LD_W_ABS, _ARG0),
            _op(_JEQ_K, _AF_UNIX, 0, 1),
            _op(_RET_K, _RET_ALLOW),
            _op(_RET_K, eperm),
        ]
    # clone(flags, ...): no new namespaces.
    prog += [
        _op(_JEQ_K, table["clone"], 0, 4),
        _op(_LD_W_ABS, _ARG0),
        _op(_JSET_K, _NAMESPACE_FLAGS, 0, 1),
        _op(_RET_K, eperm),
        _op(_RET_K, _RET_ALLOW),
    ]
    prog.append(_op(_RET_K, eperm))
    return b"".join(prog)


@functools.cache
def _program() -> bytes:
    """This machine's program, built once (the zygote builds it before it forks workers)."""
    return build()


def install() -> None:
    """Install the filter on the calling thread (no_new_privs must be set, or root)."""
    program = _program()
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _Filter(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    libc.prctl_ptr(
        libc.PR_SET_SECCOMP,
        libc.SECCOMP_MODE_FILTER,
        ctypes.cast(ctypes.pointer(fprog), ctypes.c_void_p),
    )
