"""The worker's file system view, built in its private mount namespace.

A fresh tmpfs becomes the root; only what the worker needs is bound into it: the system
directories, the Python installation and packages (read-only), the model folder and other
models' folders (read-only), its job directory (writable), a private /tmp sized from
``diskMebibytes``, a minimal /dev and a /proc of its own pid namespace. Everything else
(the launcher's data root, other jobs, home folders) does not exist inside.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from launcher.sandbox import libc

SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
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
    tmp_mebibytes: int = 1024
    fresh_proc: bool = True  # a pid namespace of its own: mount a new /proc


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


def _bind_all(binds: list[tuple[str, int]], root: str) -> None:
    # Parents first, so that a child bind is not covered by its parent's.
    for path, flags in sorted(binds, key=lambda item: item[0].count("/")):
        if os.path.exists(path):
            _bind(path, _inside(root, path), flags)


def _inside(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/"))


def build_root(layout: FsLayout) -> None:
    """Replace this mount namespace's root with the worker's view (root privileges)."""
    os.umask(0o022)
    libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)
    root = layout.staging
    libc.mount("tmpfs", root, "tmpfs", libc.MS_NOSUID | libc.MS_NODEV, "mode=0755,size=16m")
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            os.symlink(os.readlink(path), _inside(root, path))
        elif os.path.isdir(path):
            _bind(path, _inside(root, path), _RO)
    # The private /tmp first: the interpreter, the project or the job may live under the
    # host's /tmp, and their binds below must land on top of it, not under it.
    tmp = _inside(root, "/tmp")
    _makedirs(tmp)
    libc.mount(
        "tmpfs",
        tmp,
        "tmpfs",
        libc.MS_NOSUID | libc.MS_NODEV,
        f"mode=1777,size={layout.tmp_mebibytes}m",
    )
    _bind_all([(p, _RO) for p in layout.support], root)
    for path in layout.hidden:
        target = _inside(root, path)
        if os.path.isdir(target):
            libc.mount("tmpfs", target, "tmpfs", _RO | libc.MS_NOEXEC, "size=4k,mode=0755")
    data = libc.MS_NOSUID | libc.MS_NODEV
    _bind_all([(p, _RO) for p in layout.read_only] + [(p, data) for p in layout.writable], root)
    _build_dev(_inside(root, "/dev"), layout)
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


def _build_dev(dev: str, layout: FsLayout) -> None:
    _makedirs(dev)
    libc.mount("tmpfs", dev, "tmpfs", libc.MS_NOSUID | libc.MS_NOEXEC, "mode=0755,size=64k")
    for name in _DEVICES:
        if os.path.exists(f"/dev/{name}"):
            _bind(f"/dev/{name}", f"{dev}/{name}", libc.MS_NOSUID | libc.MS_NOEXEC)
    for path in layout.devices:
        _bind(path, _inside(dev, os.path.relpath(path, "/dev")), libc.MS_NOSUID | libc.MS_NOEXEC)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, f"{dev}/{name}")
    shm = f"{dev}/shm"
    _makedirs(shm)
    libc.mount(
        "tmpfs",
        shm,
        "tmpfs",
        libc.MS_NOSUID | libc.MS_NODEV,
        f"mode=1777,size={layout.tmp_mebibytes}m",
    )
