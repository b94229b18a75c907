"""The model registry: model folders under ``<root>/models/<modelId>/`` and their ``model.toml``.

Models are read per request (adding a folder needs no restart). A folder's configuration is
validated here, field by field, so that a bad ``model.toml`` becomes ``ModelConfigError`` with a
message naming the field, which the job reports as ``invalid_executable_file``.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

from launcher.errors import ModelNotFound
from launcher.store.model_toml import ModelConfigError, ParamRule, parse_model_toml

__all__ = [
    "ModelConfig",
    "ModelConfigError",
    "ModelReadError",
    "ModelRegistry",
    "ParamRule",
    "valid_model_id",
]

_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# Written by Python when main.py is imported outside a read-only sandbox; not the model's code.
_IGNORED_DIRS = frozenset({"__pycache__"})


class ModelReadError(Exception):
    """An I/O error reading the model's files (``read_executable_file_failed``)."""


@dataclass(frozen=True)
class ModelConfig:
    model_id: str
    path: Path
    main_py: Path
    runtime: str
    name: str
    max_code_startup: float
    max_create_state: float
    parameters: tuple[ParamRule, ...]
    code_version: str
    created_at: float
    fresh_process: bool = False


def valid_model_id(model_id: str) -> bool:
    """``[A-Za-z0-9][A-Za-z0-9._-]{0,127}``: one path component, never ``.``/``..``."""
    return isinstance(model_id, str) and _MODEL_ID.fullmatch(model_id) is not None


class ModelRegistry:
    """The model folders of one data root."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = Path(models_dir)

    def exists(self, model_id: str) -> bool:
        return valid_model_id(model_id) and (self.models_dir / model_id).is_dir()

    def list_ids(self) -> list[str]:
        try:
            names = os.listdir(self.models_dir)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if self.exists(n))

    def load(self, model_id: str) -> ModelConfig:
        """The model's configuration: ``ModelNotFound`` (no such folder), ``ModelConfigError``,
        ``ModelReadError``."""
        if not self.exists(model_id):
            raise ModelNotFound(model_id)
        try:
            folder = (self.models_dir / model_id).resolve(strict=True)
            folder_stat = folder.stat()
        except FileNotFoundError:
            raise ModelNotFound(model_id) from None
        except OSError as e:
            raise ModelReadError(f"model {model_id!r}: cannot open its folder: {e}") from e
        main_py = folder / "main.py"
        _check_main_py(main_py)
        config = parse_model_toml(_read_model_toml(folder / "model.toml"))
        return ModelConfig(
            model_id=model_id,
            path=folder,
            main_py=main_py,
            runtime=config.runtime,
            fresh_process=config.fresh_process,
            name=config.name if config.name is not None else model_id,
            max_code_startup=config.max_code_startup,
            max_create_state=config.max_create_state,
            parameters=config.parameters,
            code_version=code_version(folder),
            created_at=min(folder_stat.st_mtime, folder_stat.st_ctime),
        )


def code_version(folder: Path) -> str:
    """A hash of every file's (relative path, size, mtime_ns): changes when any file does."""
    entries: list[str] = []

    def fail(error: OSError) -> None:
        raise error

    try:
        for dirpath, dirnames, filenames in os.walk(folder, onerror=fail):
            dirnames[:] = sorted(d for d in dirnames if d not in _IGNORED_DIRS)
            for filename in filenames:
                path = Path(dirpath, filename)
                st = path.lstat()
                entries.append(f"{path.relative_to(folder)}\0{st.st_size}\0{st.st_mtime_ns}")
    except OSError as e:
        raise ModelReadError(f"{folder}: cannot list the model's files: {e}") from e
    digest = hashlib.sha256("\n".join(sorted(entries)).encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:32]


def _check_main_py(main_py: Path) -> None:
    try:
        mode = main_py.stat().st_mode
    except FileNotFoundError:
        raise ModelConfigError("main.py is missing from the model folder") from None
    except OSError as e:
        raise ModelReadError(f"cannot read main.py: {e}") from e
    if not stat.S_ISREG(mode):
        raise ModelConfigError("main.py is not a regular file")


def _read_model_toml(path: Path) -> dict[str, object] | None:
    """The parsed file, ``None`` when there is none."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise ModelConfigError("model.toml is not a regular file") from None
    except OSError as e:
        raise ModelReadError(f"cannot read model.toml: {e}") from e
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ModelConfigError(f"model.toml is not UTF-8: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ModelConfigError(f"model.toml is not valid TOML: {e}") from None
