"""Parsing of the command line's compact value syntaxes into the client's request dicts.

Each parser raises ``argparse.ArgumentTypeError`` with a message saying what was expected, so
that a bad value is a usage error (exit code 2).
"""

from __future__ import annotations

import argparse
import json
import mmap
from pathlib import Path
from typing import Any

import numpy

_SPEC_FIELDS = {
    "cpus": "cpus",
    "memory": "memoryMebibytes",
    "disk": "diskMebibytes",
    "swap": "swapMebibytes",
}


def _fail(message: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(message)


def _split_pair(text: str, what: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise _fail(f"expected {what}, got {text!r}")
    return name, value


def launcher_spec(text: str) -> dict[str, Any]:
    """``cpus=1,memory=512[,disk=MiB][,swap=MiB][,gpus=[MODEL:]COUNT]`` to a LauncherSpec."""
    spec: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, value = _split_pair(item, "KEY=VALUE")
        try:
            if key == "cpus":
                spec["cpus"] = float(value)
            elif key in _SPEC_FIELDS:
                spec[_SPEC_FIELDS[key]] = int(value)
            elif key == "gpus":
                model, _, count = value.rpartition(":")
                spec["gpus"] = {"model": model, "count": int(count)}
            else:
                raise _fail(
                    f"unknown launcher spec field {key!r}; known: cpus, memory, disk, swap, gpus"
                )
        except ValueError:
            raise _fail(f"{key}: expected a number, got {value!r}") from None
    for key in ("cpus", "memory"):
        if _SPEC_FIELDS[key] not in spec:
            raise _fail(f"launcher spec {text!r} lacks {key}=")
    return spec


MOUNT_FORMS = "MODEL (its active state), MODEL:STATE or MODEL@SNAPSHOT"


def mount(text: str) -> dict[str, str]:
    """``MODEL`` (its active state), ``MODEL:STATE`` or ``MODEL@SNAPSHOT``."""
    at, colon = text.find("@"), text.find(":")
    if at >= 0 and colon >= 0:
        raise _fail(f"expected {MOUNT_FORMS}, not both a state and a snapshot: {text!r}")
    separator, key = ("@", "snapshotId") if at >= 0 else (":", "stateId")
    model_id, sep, other = text.partition(separator)
    if not model_id or (sep and not other):
        raise _fail(f"expected {MOUNT_FORMS}, got {text!r}")
    return {"modelId": model_id, key: other} if sep else {"modelId": model_id}


def load_file(path_text: str) -> Any:
    """A ``.npy`` file as a (memory-mapped) array; any other file as its raw bytes, which must
    be serialized tensors."""
    path = Path(path_text)
    try:
        if path.suffix == ".npy":
            return numpy.load(path, mmap_mode="r", allow_pickle=False)
        with path.open("rb") as file:
            if path.stat().st_size == 0:
                return b""
            return memoryview(mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ))
    except (OSError, ValueError) as exc:
        raise _fail(f"cannot load {path_text}: {exc}") from None


def json_tensor(text: str) -> Any:
    """A JSON value as a tensor: numbers/lists become i64 or f64 arrays, strings string tensors."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise _fail(
            f"expected @FILE, dataset:ID/KEY or a JSON value, got {text!r} (quote strings: '\"x\"')"
        ) from None
    if isinstance(value, dict) or value is None:
        raise _fail(f"a JSON object or null is not a tensor: {text!r}")
    array = numpy.asarray(value)
    if array.dtype.kind == "i":
        return array.astype(numpy.int64)
    if array.dtype.kind == "f":
        return array.astype(numpy.float64)
    if array.dtype.kind in "bU":
        return array
    raise _fail(f"JSON value {text!r} mixes element types or is ragged")


def param(text: str) -> tuple[str, Any]:
    """``name=@file``, ``name=dataset:DATASET_ID/KEY`` or ``name=JSON``: (name, data).

    Data is one tensor (added to the param's list) or a dataset reference dict.
    """
    name, value = _split_pair(text, "NAME=@FILE, NAME=dataset:ID/KEY or NAME=JSON")
    if value.startswith("@"):
        return name, load_file(value[1:])
    if value.startswith("dataset:"):
        dataset_id, sep, key = value[len("dataset:") :].partition("/")
        if not sep or not dataset_id or not key:
            raise _fail(f"expected dataset:DATASET_ID/KEY, got {value!r}")
        return name, {"type": "dataset", "datasetId": dataset_id, "datasetKey": key}
    return name, json_tensor(value)


def group_params(items: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """Repeated ``--param`` of one name append tensors to that param, in order."""
    params: dict[str, Any] = {}
    for name, data in items:
        if isinstance(data, dict) or isinstance(params.get(name), dict):
            if name in params:
                raise _fail(f"param {name!r}: a dataset param cannot have other values")
            params[name] = data
        else:
            params.setdefault(name, []).append(data)
    return [{"name": name, "data": data} for name, data in params.items()]


def file_key(text: str) -> tuple[str, Path]:
    """``key=@file``: the file must be a readable regular file (checked now, so that a bad
    path is a usage error before anything is sent)."""
    key, value = _split_pair(text, "KEY=@FILE")
    if not value.startswith("@") or len(value) < 2:
        raise _fail(f"expected KEY=@FILE, got {text!r}")
    path = Path(value[1:])
    readable_file(path)
    return key, path


def readable_file(path: Path) -> None:
    """``ArgumentTypeError`` unless ``path`` is a regular file this user can read."""
    try:
        if not path.is_file():
            what = "a folder" if path.is_dir() else "missing" if not path.exists() else "special"
            raise _fail(f"{path}: not a regular file ({what})")
        with path.open("rb"):
            pass
    except OSError as exc:
        raise _fail(f"{path}: cannot be read: {exc.strerror or exc}") from None


def output_folder(text: str) -> Path:
    """A folder to write into: existing, or one that can be created (not an existing file)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise _fail(f"{path}: exists and is not a folder")
    return path


def dataset_key(text: str) -> dict[str, Any]:
    """``name[:required][:types=f32,f64][:shape=-1,3]`` to a dataset key definition."""
    name, *options = text.split(":")
    if not name:
        raise _fail(f"expected NAME[:required][:types=..][:shape=..], got {text!r}")
    key: dict[str, Any] = {"name": name, "required": False, "rules": {}}
    for option in options:
        if option == "required":
            key["required"] = True
        elif option.startswith("types="):
            key["rules"]["allowedTypes"] = [t for t in option[len("types=") :].split(",") if t]
        elif option.startswith("shape="):
            try:
                key["rules"]["shape"] = [int(d) for d in option[len("shape=") :].split(",") if d]
            except ValueError:
                raise _fail(f"shape: expected integers, got {option!r}") from None
        else:
            raise _fail(f"unknown dataset key option {option!r}; known: required, types=, shape=")
    return key


def csv(text: str) -> list[str]:
    return [item for item in text.split(",") if item]


def indexes(text: str) -> list[int]:
    try:
        return [int(item) for item in csv(text)]
    except ValueError:
        raise _fail(f"expected comma-separated integers, got {text!r}") from None
