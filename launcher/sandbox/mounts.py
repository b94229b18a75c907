"""The worker's file system view, built in its private mount namespace.

A fresh tmpfs becomes the root; only what the worker needs is bound into it: the system
directories, the Python installation and packages (read-only), the model folder and other
models' folders (read-only, bound by file descriptor), a minimal /dev and a /proc of its own
pid namespace. Everything else (the launcher's data root, other jobs, home folders) does not
exist inside.

One disk budget: a single tmpfs of ``diskMebibytes`` (and ``disk_inodes`` inodes) is mounted
once; the job folder ($HOME, the cwd), /tmp and /dev/shm are its subfolders, so they share the
budget, and writing past it is ENOSPC. tmpfs pages are charged to the worker's memory cgroup
and never touch the data root's file system. The host's job folder entries (the IPC socket)
are bound into the job folder; small regular files are copied (charged to the budget).
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, field

from launcher.sandbox import libc

SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: The worker's /etc is made, not the host's: these stubs, plus the host entries below.
ETC_FILES = {
    "passwd": "root:x:0:0:root:/root:/usr/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    "group": "root:x:0:\nnogroup:x:65534:\n",
    "hosts": "127.0.0.1 localhost sandbox\n::1 localhost\n",
    "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
}
#: Host /etc entries a worker may need (TLS roots, time zone, the dynamic loader's cache,
#: Debian's alternatives symlinks, the distribution's Python config); never resolv.conf.
ETC_FROM_HOST = (
    "ssl",
    "ca-certificates",
    "pki",
    "localtime",
    "timezone",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "python3",
    "os-release",
)
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
_RO = libc.MS_RDONLY | libc.MS_NOSUID | libc.MS_NODEV


@dataclass
class FsLayout:
    """What the worker sees; every path is a host path that appears at the same path."""

    staging: str  # an empty host directory to build the new root on
    support: list[str] = field(default_factory=list)  # interpreter, packages: read-only
    read_only: list[str] = field(default_factory=list)  # model folders
    writable: list[str] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)  # covered with empty tmpfs if inside
    devices: list[str] = field(default_factory=list)  # extra device nodes (GPUs)
    tmp_mebibytes: int = 1024  # the one disk budget: job folder + /tmp + /dev/shm
    disk_inodes: int = 65536
    fresh_proc: bool = True  # a pid namespace of its own: mount a new /proc
    #: For each ``read_only`` path, the real path the host verified (inside the models
    #: folder); the child opens it O_PATH|O_NOFOLLOW, checks it is still that, binds the fd.
    read_only_real: list[str] = field(default_factory=list)
    scratch: str = ""  # an empty host directory to mount the budget's tmpfs on


def _makedirs(path: str) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)


def _bind(source: str, target: str, flags: int) -> None:
    if os.path.isdir(source):
        _makedirs(target)
    else:
        _makedirs(os.path.dirname(target))
        with open(target, "a"):
            pass
    libc.mount(source, target, None, libc.MS_BIND | libc.MS_REC)
    libc.mount(None, target, None, libc.MS_REMOUNT | libc.MS_BIND | flags)


class BindRefused(OSError):
    """A folder to bind is not what the host verified (a symlink, or swapped since)."""


def open_folder(path: str) -> int:
    """An O_PATH fd of the folder ``path`` itself (a symlink as last component: ELOOP)."""
    return os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC)


def real_path_of(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def _bind_verified(real: str, target: str) -> None:
    """Bind the folder at ``real`` by fd, refusing anything but that very folder."""
    try:
        fd = open_folder(real)
    except OSError as exc:
        raise BindRefused(exc.errno, f"refusing to bind {real}: {exc.strerror}") from exc
    try:
        if real_path_of(fd) != real:
            raise BindRefused(1, f"refusing to bind {real}: it resolves elsewhere now")
        _makedirs(target)
        libc.mount(f"/proc/self/fd/{fd}", target, None, libc.MS_BIND | libc.MS_REC)
        libc.mount(None, target, None, libc.MS_REMOUNT | libc.MS_BIND | _RO)
    finally:
        os.close(fd)


def _mount_budget(layout: FsLayout, root: str, mebibytes: int | None = None) -> None:
    """One tmpfs for everything writable: /tmp, /dev/shm here, job folders by _bind_jobs."""
    scratch = layout.scratch
    _makedirs(scratch)
    size, inodes = (
        (layout.tmp_mebibytes, layout.disk_inodes) if mebibytes is None else (mebibytes, 1024)
    )
    libc.mount(
        "tmpfs",
        scratch,
        "tmpfs",
        libc.MS_NOSUID | libc.MS_NODEV,
        f"mode=0755,size={size}m,nr_inodes={inodes}",
    )
    for name, target, mode in (("tmp", "/tmp", 0o1777), ("shm", "/dev/shm", 0o1777)):
        _budget_folder(layout, name, _inside(root, target), mode)


def _budget_folder(layout: FsLayout, name: str, target: str, mode: int) -> None:
    source = os.path.join(layout.scratch, name)
    os.mkdir(source)
    os.chmod(source, mode)
    _makedirs(target)
    libc.mount(source, target, None, libc.MS_BIND)


def _bind_jobs(layout: FsLayout, root: str) -> None:
    """Each job folder is a budget folder holding the host folder's socket (bound) and
    copies of its small files."""
    for i, job in enumerate(layout.writable):
        inside = _inside(root, job)
        _budget_folder(layout, f"job{i}", inside, 0o700)
        for entry in os.scandir(job):
            target = os.path.join(inside, entry.name)
            mode = entry.stat(follow_symlinks=False).st_mode
            if stat.S_ISSOCK(mode):
                with open(target, "a"):
                    pass
                libc.mount(entry.path, target, None, libc.MS_BIND)
            elif stat.S_ISREG(mode):
                shutil.copy2(entry.path, target)
            elif stat.S_ISDIR(mode):
                shutil.copytree(entry.path, target, symlinks=True)


def _bind_all(binds: list[tuple[str, int]], root: str) -> None:
    # Parents first, so that a child bind is not covered by its parent's.
    for path, flags in sorted(binds, key=lambda item: item[0].count("/")):
        if os.path.exists(path):
            _bind(path, _inside(root, path), flags)


def _inside(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/"))


def build_root(layout: FsLayout) -> None:
    """Replace this mount namespace's root with the worker's view (root privileges)."""
    build_base(layout)
    finish_root(layout)


def build_base(layout: FsLayout, budget_mebibytes: int | None = None) -> None:
    """The part of the view every job of this launcher shares: the root tmpfs, the system
    directories, /etc, /dev, the budget's tmpfs (``budget_mebibytes`` now: a spare's, resized
    by ``finish_root``), the support paths and the first cover of the hidden paths. A spare
    sandbox builds it before its job is known."""
    os.umask(0o022)
    libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)
    root = layout.staging
    libc.mount("tmpfs", root, "tmpfs", libc.MS_NOSUID | libc.MS_NODEV, "mode=0755,size=16m")
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            os.symlink(os.readlink(path), _inside(root, path))
        elif os.path.isdir(path):
            _bind(path, _inside(root, path), _RO)
    _build_etc(root)
    # The private /tmp first: the interpreter, the project or the job may live under the
    # host's /tmp, and their binds below must land on top of it, not under it.
    _build_dev(_inside(root, "/dev"))
    _mount_budget(layout, root, budget_mebibytes)
    _bind_all([(p, _RO) for p in layout.support], root)
    for path in layout.hidden:
        _cover(root, path)


def resize_budget(layout: FsLayout) -> None:
    """Give a spare's budget tmpfs the job's size and inode count."""
    libc.mount(
        None,
        layout.scratch,
        None,
        libc.MS_REMOUNT | libc.MS_NOSUID | libc.MS_NODEV,
        f"size={layout.tmp_mebibytes}m,nr_inodes={layout.disk_inodes}",
    )


def finish_root(layout: FsLayout) -> None:
    """The job's own part of the view (its devices, model folders, job folder, the last cover
    of the hidden paths, /proc), then the pivot into it."""
    root = layout.staging
    dev = _inside(root, "/dev")
    for path in layout.devices:
        _bind(path, _inside(dev, os.path.basename(path)), libc.MS_NOSUID | libc.MS_NOEXEC)
    # Model folders by fd, each verified to be the folder the host checked (inside models/).
    reals = layout.read_only_real or layout.read_only
    pairs = sorted(zip(layout.read_only, reals, strict=True), key=lambda p: p[0].count("/"))
    for path, real in pairs:
        _bind_verified(real, _inside(root, path))
    _bind_jobs(layout, root)
    # Last: hidden paths holding no model or job folder are covered again, on top of every
    # bind, so that no bind can uncover them.
    for path in layout.hidden:
        if not any(_under(p, path) for p in (*layout.read_only, *layout.writable)):
            _cover(root, path)
    proc = _inside(root, "/proc")
    _makedirs(proc)
    if layout.fresh_proc:
        libc.mount("proc", proc, "proc", libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC)
    else:
        libc.mount("/proc", proc, None, libc.MS_BIND | libc.MS_REC)
    os.chdir(root)
    libc.pivot_root(".", ".")
    libc.umount2(".", libc.MNT_DETACH)
    os.chdir("/")
    libc.mount(None, "/", None, libc.MS_REMOUNT | _RO)


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _cover(root: str, path: str) -> None:
    target = _inside(root, path)
    if os.path.isdir(target):
        libc.mount("tmpfs", target, "tmpfs", _RO | libc.MS_NOEXEC, "size=4k,mode=0755")


def _build_etc(root: str) -> None:
    etc = _inside(root, "/etc")
    _makedirs(etc)
    for name, text in ETC_FILES.items():
        with open(os.path.join(etc, name), "w") as handle:
            handle.write(text)
    for name in ETC_FROM_HOST:
        host = os.path.join("/etc", name)
        if os.path.islink(host):
            os.symlink(os.readlink(host), os.path.join(etc, name))
        elif os.path.exists(host):
            _bind(host, os.path.join(etc, name), _RO)
    for entry in os.scandir("/etc"):  # python3.11, ... beside python3
        if entry.name.startswith("python3.") and entry.is_dir(follow_symlinks=False):
            _bind(entry.path, os.path.join(etc, entry.name), _RO)


def _build_dev(dev: str) -> None:
    """A minimal /dev (the job's devices, GPUs, are bound by ``finish_root``)."""
    _makedirs(dev)
    libc.mount("tmpfs", dev, "tmpfs", libc.MS_NOSUID | libc.MS_NOEXEC, "mode=0755,size=64k")
    for name in _DEVICES:
        if os.path.exists(f"/dev/{name}"):
            _bind(f"/dev/{name}", f"{dev}/{name}", libc.MS_NOSUID | libc.MS_NOEXEC)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, f"{dev}/{name}")
