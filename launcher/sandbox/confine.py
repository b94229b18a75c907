"""The worker process's own confinement, applied last before the model's code runs.

Order matters: rlimits and the capability bounding set need root, so they come before the
uid drop; the uid drop clears PR_SET_PDEATHSIG, so it is set again after; no_new_privs
comes before seccomp (which requires it).
"""

from __future__ import annotations

import ctypes
import gc
import importlib.util
import os
import resource
import runpy
import select
import signal
import sys
import threading
import traceback
import types
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import CodeType
from typing import Any

from launcher.sandbox import libc, seccomp
from launcher.sandbox.recipe import SETUP_FAILED, Recipe

_BLAS_SETTERS = (
    "scipy_openblas_set_num_threads64_",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
)


def _last_cap() -> int:
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return 63  # every bit a capability set can hold (drops past the last are EINVAL)


#: The kernel's highest capability number: read once (in the zygote, for all its workers).
LAST_CAP = _last_cap()


def _drop_privileges(uid: int | None, gid: int | None) -> None:
    """Empty bounding and ambient sets, then the uid drop (when the layer is on), then no
    capability left in any set: even a worker that stays uid 0 (namespaces off) has none, and
    exec cannot give one back (bounding set empty, no_new_privs)."""
    if libc.capabilities_held():
        libc.drop_bounding_set(LAST_CAP)
        libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_CLEAR_ALL)
    if uid is not None:
        os.setgroups([])
        group = gid if gid is not None else uid
        os.setresgid(group, group, group)
        os.setresuid(uid, uid, uid)
    libc.clear_capabilities()


def _confine(recipe: Recipe, parent: int, alive_fd: int) -> None:
    libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
    for name, value in recipe.rlimits.items():
        resource.setrlimit(getattr(resource, name), (value, value))
    _drop_privileges(recipe.uid, recipe.gid)
    libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent or select.select([alive_fd], [], [], 0)[0]:
        os._exit(SETUP_FAILED)
    libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
    if recipe.seccomp:
        seccomp.install()
    os.chdir(recipe.cwd)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))


def _set_blas_threads(count: int) -> None:
    """The zygote imported numpy with one OpenBLAS thread; give the worker its own count."""
    maps = Path("/proc/self/maps").read_text().splitlines()
    libraries = {line.split()[-1] for line in maps if "openblas" in line.rsplit("/", 1)[-1]}
    for path in libraries:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _BLAS_SETTERS:
            setter = getattr(library, name, None)
            if setter is not None:
                setter(count)
                break


#: ``python -m`` modules whose ``__main__`` the zygote found and compiled ahead: (spec, code).
_MAINS: dict[str, tuple[ModuleSpec, CodeType]] = {}


def preload_main(module: str) -> None:
    """Find and compile ``module``'s ``__main__`` now (in the zygote), not in each worker."""
    try:
        spec = importlib.util.find_spec(f"{module}.__main__")
        loader: Any = spec.loader if spec is not None else None
        code = loader.get_code(spec.name) if spec is not None and loader is not None else None
    except (ImportError, AttributeError, ValueError, SyntaxError, OSError):
        return
    if spec is not None and code is not None:
        _MAINS[module] = (spec, code)


def _run_main(spec: ModuleSpec, code: CodeType) -> None:
    """What ``runpy.run_module(..., run_name="__main__", alter_sys=True)`` does, with the
    spec and code found ahead (the worker never returns, so nothing is restored)."""
    main = types.ModuleType("__main__")
    main.__dict__.update(
        __file__=spec.origin,
        __cached__=spec.cached,
        __loader__=spec.loader,
        __package__=spec.parent,
        __spec__=spec,
    )
    sys.modules["__main__"] = main
    if spec.origin:
        sys.argv[0] = spec.origin
    exec(code, main.__dict__)


def _run_module(recipe: Recipe, module: str) -> None:
    """Run ``module`` as ``python -m`` would, in this (forked, pre-imported) interpreter."""
    gc.enable()  # off in the keeper and init; what the zygote held stays frozen (unscanned)
    os.environ.clear()
    os.environ.update(recipe.env)
    if recipe.blas_threads > 1:
        _set_blas_threads(recipe.blas_threads)
    sys.argv = [recipe.argv[0]]
    sys.path[0] = recipe.cwd
    code = 0
    try:
        found = _MAINS.get(module)
        if found is not None:
            _run_main(*found)
        else:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    # What interpreter shutdown would do: join threads, atexit, flush; never return to the
    # zygote's loop, whose frames are still on this stack.
    threading._shutdown()  # type: ignore[attr-defined]
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def run_worker(recipe: Recipe, parent: int, alive_fd: int) -> None:
    """Body of the worker process; never returns."""
    try:
        _confine(recipe, parent, alive_fd)
    except OSError as exc:
        os.write(2, f"sandbox: confining the worker failed: {exc}\n".encode())
        os._exit(SETUP_FAILED)
    if recipe.run_module is not None:
        _run_module(recipe, recipe.run_module)
    try:
        os.execvpe(recipe.argv[0], recipe.argv, recipe.env)
    except OSError as exc:
        os.write(2, f"sandbox: cannot execute {recipe.argv[0]!r}: {exc}\n".encode())
        os._exit(127)
