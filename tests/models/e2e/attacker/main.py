"""Attacks the sandbox on purpose; the 'what' param picks the attack, 'arg' its argument, and
the state key 'outcome' holds a JSON report of what happened (each attack reports, never
raises, so a refused attack is a successful job).

env_memory HEAD|TAIL  look for the secret HEAD+TAIL in os.environ, /proc/self/environ and
                      every readable region of /proc/self/mem (the stack after argv
                      included); the two halves are never joined in this process, so
                      only a real copy of the secret can match
io_uring FAMILY       create a socket of FAMILY (inet, inet6, vsock, netlink) through
                      io_uring's IORING_OP_SOCKET, raw syscalls through ctypes
denied                call each seccomp-denied family once; report each errno name
fill PLACES:MIB       write MIB MiB into each of the comma-separated places (home, tmp, shm)
inodes COUNT          create COUNT empty files in $HOME
privileges            the process's uid and capability sets
mountinfo             the mount points the worker sees
etc                   the names in /etc and the text of /etc/passwd
"""

import ctypes
import errno
import json
import mmap
import os
import socket
import struct

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_X86 = os.uname().machine == "x86_64"
# (x86_64, aarch64) numbers of what `denied` tries.
_CALLS = {
    "io_uring_setup": (425, 425),
    "unshare": (272, 97),
    "setns": (308, 268),
    "mount": (165, 40),
    "ptrace": (101, 117),
    "process_vm_readv": (310, 270),
    "bpf": (321, 280),
    "keyctl": (250, 219),
    "add_key": (248, 217),
    "perf_event_open": (298, 241),
    "userfaultfd": (323, 282),
    "reboot": (169, 142),
    "kexec_load": (246, 104),
    "init_module": (175, 105),
    "iopl": (172, None),
    "ioperm": (173, None),
    "mknodat": (259, 33),
    "swapon": (167, 224),
    "settimeofday": (164, 170),
    "quotactl": (179, 60),
    "syslog": (103, 116),
    "pivot_root": (155, 41),
    "chroot": (161, 51),
}
_FAMILIES = {"inet": 2, "inet6": 10, "netlink": 16, "vsock": 40, "packet": 17}
_KINDS = {"netlink": socket.SOCK_RAW}


def _syscall(number, *args):
    ctypes.set_errno(0)
    result = _libc.syscall(ctypes.c_long(number), *[ctypes.c_long(a) for a in args])
    return result, ctypes.get_errno()


def _errname(err):
    return errno.errorcode.get(err, str(err))


def io_uring_socket(domain, kind=socket.SOCK_STREAM):
    """A socket made by IORING_OP_SOCKET: "fd N" on success, else "refused: <where>: <errno>"."""
    params = ctypes.create_string_buffer(120)
    fd, err = _syscall(425, 4, ctypes.addressof(params))
    if fd < 0:
        return f"refused: io_uring_setup: {_errname(err)}"
    try:
        fields = struct.unpack_from("10I", params.raw, 0)
        sq_entries, cq_entries, features = fields[0], fields[1], fields[5]
        sq_off = struct.unpack_from("8IQ", params.raw, 40)
        cq_off = struct.unpack_from("8IQ", params.raw, 80)
        sq_size = sq_off[6] + sq_entries * 4
        cq_size = cq_off[5] + cq_entries * 16
        if features & 1:  # IORING_FEAT_SINGLE_MMAP
            sq_size = cq_size = max(sq_size, cq_size)
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        sq = mmap.mmap(fd, sq_size, mmap.MAP_SHARED | mmap.MAP_POPULATE, prot, offset=0)
        cq = sq if features & 1 else mmap.mmap(fd, cq_size, mmap.MAP_SHARED, prot, offset=0x8000000)
        sqes = mmap.mmap(fd, sq_entries * 64, mmap.MAP_SHARED, prot, offset=0x10000000)
        sqe = bytearray(64)
        struct.pack_into("BBHiQQII", sqe, 0, 45, 0, 0, domain, kind, 0, 0, 0)  # OP_SOCKET
        struct.pack_into("Q", sqe, 32, 7)  # user_data
        sqes[0:64] = bytes(sqe)
        tail = struct.unpack_from("I", sq, sq_off[1])[0]
        mask = struct.unpack_from("I", sq, sq_off[2])[0]
        struct.pack_into("I", sq, sq_off[6] + (tail & mask) * 4, 0)
        struct.pack_into("I", sq, sq_off[1], tail + 1)
        done, err = _syscall(426, fd, 1, 1, 1, 0, 0)  # io_uring_enter, GETEVENTS
        if done < 0:
            return f"refused: io_uring_enter: {_errname(err)}"
        head = struct.unpack_from("I", cq, cq_off[0])[0]
        cq_mask = struct.unpack_from("I", cq, cq_off[2])[0]
        _, res, _ = struct.unpack_from("QiI", cq, cq_off[5] + (head & cq_mask) * 16)
        if res < 0:
            return f"refused: IORING_OP_SOCKET: {_errname(-res)}"
        os.close(res)
        return f"fd {res}"
    finally:
        os.close(fd)


def _readable_regions():
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split()
            start, end = (int(x, 16) for x in parts[0].split("-"))
            if parts[1].startswith("r") and (len(parts) < 6 or parts[5] != "[vvar]"):
                yield start, end, parts[5] if len(parts) > 5 else ""


def _read_own_memory(address, size):
    """Bytes of this process's memory, copied by the kernel through a pipe (an unreadable page
    is EFAULT, not a crash; /proc/self/mem is closed to a process that changed its uid)."""
    read_fd, write_fd = os.pipe()
    chunks = []
    try:
        for offset in range(0, size, 65536):
            n = _libc.write(write_fd, ctypes.c_void_p(address + offset), min(65536, size - offset))
            if n <= 0:
                chunks.append(b"\0")  # a hole: never joins a match across it
                continue
            chunks.append(os.read(read_fd, n))
    finally:
        os.close(read_fd)
        os.close(write_fd)
    return b"".join(chunks)


def _contains(data, head, tail):
    start = data.find(head)
    while start >= 0:
        if data[start + len(head) : start + len(head) + len(tail)] == tail:
            return True
        start = data.find(head, start + 1)
    return False


def env_memory(halves):
    head, _, tail = (part.encode() for part in halves.partition("|"))
    found = []
    if any(_contains(f"{k}={v}".encode(), head, tail) for k, v in os.environ.items()):
        found.append("os.environ")
    try:
        with open("/proc/self/environ", "rb") as f:
            if _contains(f.read(), head, tail):
                found.append("/proc/self/environ")
    except OSError:
        pass  # unreadable is fine: the memory scan below reads the same bytes
    scanned = 0
    for start, end, name in _readable_regions():
        data = _read_own_memory(start, end - start)
        scanned += len(data)
        if _contains(data, head, tail):
            found.append(name or hex(start))
    return {"found": found, "scanned_bytes": scanned}


def denied():
    out = {}
    col = 0 if _X86 else 1
    for name, numbers in _CALLS.items():
        number = numbers[col]
        if number is None:
            continue
        result, err = _syscall(number, 0, 0, 0, 0, 0)
        out[name] = "ok" if result >= 0 else _errname(err)
    for family, domain in _FAMILIES.items():
        try:
            socket.socket(
                domain, socket.SOCK_RAW if family == "packet" else socket.SOCK_DGRAM
            ).close()
            out[f"socket_{family}"] = "ok"
        except OSError as exc:
            out[f"socket_{family}"] = _errname(exc.errno)
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
        out["socket_raw"] = "ok"
    except OSError as exc:
        out["socket_raw"] = _errname(exc.errno)
    return out


def fill(arg):
    places, _, mib = arg.partition(":")
    where = {"home": os.environ.get("HOME", os.getcwd()), "tmp": "/tmp", "shm": "/dev/shm"}
    block = b"x" * (1 << 20)
    out = {}
    for place in places.split(","):
        vfs = os.statvfs(where[place])
        out[f"{place}_size_mib"] = vfs.f_blocks * vfs.f_frsize // (1 << 20)
        written = 0
        try:
            with open(os.path.join(where[place], f"fill-{place}"), "wb") as f:
                for _ in range(int(mib)):
                    f.write(block)
                    f.flush()
                    written += 1
                os.fsync(f.fileno())
            out[place] = f"wrote {written} MiB"
        except OSError as exc:
            out[place] = f"refused after {written} MiB: {_errname(exc.errno)}"
    return out


def inodes(count):
    home = os.environ.get("HOME", os.getcwd())
    made = 0
    try:
        for i in range(int(count)):
            with open(os.path.join(home, f"f{i}"), "w"):
                pass
            made += 1
        return f"made {made}"
    except OSError as exc:
        return f"refused after {made}: {_errname(exc.errno)}"


_STATUS_KEYS = ("Uid", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")


def privileges():
    status = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in (
                "Uid",
                "CapInh",
                "CapPrm",
                "CapEff",
                "CapBnd",
                "CapAmb",
                "NoNewPrivs",
                "Seccomp",
            ):
                status[key] = value.split()[0]
    return status


def etc():
    with open("/etc/passwd") as f:
        passwd = f.read()
    return {"names": sorted(os.listdir("/etc")), "passwd": passwd}


def mountinfo():
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f]


async def create(options):
    async def arg(name):
        return (await options.params[name].next())[0].item() if name in options.params else ""

    fixed = os.path.join(os.path.dirname(os.path.abspath(__file__)), "attack.json")
    if os.path.exists(fixed):  # a copy of this model that always runs one attack
        with open(fixed) as f:
            what, argument = json.load(f)
    else:
        what, argument = await arg("what"), await arg("arg")
    attacks = {
        "env_memory": lambda: env_memory(argument),
        "io_uring": lambda: io_uring_socket(_FAMILIES[argument], _KINDS.get(argument, 1)),
        "denied": denied,
        "fill": lambda: fill(argument),
        "inodes": lambda: inodes(argument),
        "privileges": privileges,
        "mountinfo": mountinfo,
        "etc": etc,
    }
    try:
        report = attacks[what]()
    except Exception as exc:  # the report is the point
        report = f"error: {type(exc).__name__}: {exc}"
    options.state_provider.provide("outcome", json.dumps(report).encode())


model = {"createModelState": create}
