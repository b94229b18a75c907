"""Loading a model's ``main.py`` and finding its entry points; tracebacks that show its code.

The model folder becomes the working directory, and its ``_modules`` folder and ``.`` go to the
front of the import path, so the model's own modules win over installed ones of the same name
(as they would for ``python main.py``). ``main.py`` runs as the module ``main``, registered in
``sys.modules`` so that pickling, dataclasses and ``typing.get_type_hints`` work in it.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType, TracebackType
from typing import Any

_MODULE_NAME = "main"
_RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__))


class ModelError(Exception):
    """The model file does not define what the runtime needs."""


def load_model(path: str) -> Any:
    """Execute ``path`` and return its module-level variable ``model``."""
    import importlib.util

    folder = os.path.dirname(os.path.abspath(path))
    os.chdir(folder)
    for entry in (".", os.path.join(folder, "_modules")):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    spec = importlib.util.spec_from_file_location(_MODULE_NAME, path)
    if spec is None or spec.loader is None:
        raise ModelError(f"{path} cannot be loaded as a Python module")
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE_NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[_MODULE_NAME]
        raise
    if not hasattr(module, "model"):
        raise ModelError(
            f"{os.path.basename(path)} defines no module-level variable `model`; set it to an "
            'object (or a dict) with a callable "createModelState", for example '
            "`model = MyModel()`"
        )
    return module.model


def entry_point(model: Any, name: str) -> Any:
    """``model[name]`` for a dict model, else ``model.name``; a clear error when missing."""
    found = model.get(name) if isinstance(model, dict) else getattr(model, name, None)
    if not callable(found):
        kind = "key" if isinstance(model, dict) else "attribute"
        raise ModelError(
            f"the model ({type(model).__name__}) has no callable {kind} {name!r}; "
            f"define {name}(options) on it"
        )
    return found


def format_model_traceback(error: BaseException) -> str:
    """The traceback of ``error`` without the runtime's and importlib's leading frames."""
    import traceback

    tb: TracebackType | None = error.__traceback__
    while tb is not None and _is_machinery(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(error), error, tb))


def _is_machinery(filename: str) -> bool:
    return filename.startswith("<frozen") or os.path.dirname(filename) == _RUNTIME_DIR
