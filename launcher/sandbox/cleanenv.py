"""The fixed, minimal environment of every sandbox helper process (zygote, entry helper,
probe): never the daemon's own, so no key, token or TLS path of the launcher's environment
is in any memory a worker can read (its stack after ``argv``, ``/proc/self/mem``)."""

from __future__ import annotations

import os
from importlib.util import find_spec

#: The zygote imports numpy once for all its forks: single-threaded (the fork needs that).
SINGLE_THREADED = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}


def _import_roots() -> list[str]:
    """The folders holding the ``launcher`` and ``runtime`` packages (for PYTHONPATH)."""
    roots = []
    for name in ("launcher", "runtime"):
        spec = find_spec(name)
        for location in (spec.submodule_search_locations or []) if spec else []:
            parent = os.path.dirname(os.path.realpath(location))
            if parent not in roots:
                roots.append(parent)
    return roots


def helper_env(single_threaded: bool = False) -> dict[str, str]:
    """The whole environment of a helper process: nothing taken from ``os.environ``."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONPATH": os.pathsep.join(_import_roots()),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if single_threaded:
        env.update(SINGLE_THREADED)
    return env
