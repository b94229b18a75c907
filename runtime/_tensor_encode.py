"""Turning numpy arrays, lists and Python scalars into a tensor's (type, shape, flat elements).

Owns the encode-side rules: which numpy dtype becomes which tensor type, which conversions are
allowed when a type is given, and the checks on shapes and elements. Fixed-size data stays a
numpy array (no copy when it is already C-contiguous little-endian); variable-size data becomes
a list of str, bytes or Media.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runtime._tensor_format import (
    FIXED_DTYPES,
    MAX_DIMS,
    MAX_VARINT,
    MEDIA_TYPES,
    TYPE_CODES,
    Media,
    TensorError,
)

Flat = np.ndarray | list[Any]

_TYPE_OF_DTYPE: dict[tuple[str, int], str] = {
    (dtype.kind, dtype.itemsize): name for name, dtype in FIXED_DTYPES.items()
}
_SUPPORTED = (
    "float32, float64, int8..int64, uint8..uint64, bool, str, object arrays of str or bytes, "
    "and object arrays of Media with type image/audio/video"
)
#: Python values accepted for each fixed-size dtype kind in ``from_values``.
_VALUE_CLASSES: dict[str, tuple[type, ...]] = {
    "b": (bool, np.bool_),
    "i": (int, np.integer),
    "u": (int, np.integer),
    "f": (int, float, np.integer, np.floating),
}
_ELEMENT_CLASSES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "binary": (bytes, bytearray, memoryview),
    "image": (Media,),
    "audio": (Media,),
    "video": (Media,),
}


def check_type(name: object) -> str:
    if not isinstance(name, str) or name not in TYPE_CODES:
        raise TensorError(f"unknown tensor type {name!r}: expected one of {list(TYPE_CODES)}")
    return name


def check_shape(shape: object, count: int) -> tuple[int, ...]:
    """A valid shape for ``count`` elements, as a tuple."""
    if not isinstance(shape, tuple | list):
        raise TensorError(f"shape must be a tuple of ints, not {type(shape).__name__}")
    dims = tuple(shape)
    if len(dims) > MAX_DIMS:
        raise TensorError(f"shape has {len(dims)} dimensions; at most {MAX_DIMS} are allowed")
    product = 1
    for dim in dims:
        if isinstance(dim, bool) or not isinstance(dim, int | np.integer):
            raise TensorError(f"shape {shape} holds {dim!r}: dimensions must be ints")
        if not 0 <= dim <= MAX_VARINT:
            raise TensorError(f"shape {shape} holds {dim}: dimensions must be in 0..2^64-1")
        product *= int(dim)
    if product != count:
        raise TensorError(f"shape {dims} needs {product} elements but {count} were given")
    return tuple(int(dim) for dim in dims)


def infer_type(array: np.ndarray) -> str:
    """The tensor type a numpy array becomes when no type is given."""
    kind = array.dtype.kind
    fixed = _TYPE_OF_DTYPE.get((kind, array.dtype.itemsize))
    if fixed is not None and kind in "fiub":
        return fixed
    if kind == "U":
        return "string"
    if kind == "O":
        elements = array.reshape(-1)
        if elements.size == 0:
            raise TensorError("cannot infer the type of an empty object array: pass type=")
        if all(isinstance(item, str) for item in elements):
            return "string"
        if all(isinstance(item, bytes) for item in elements):
            return "binary"
        if all(isinstance(item, Media) for item in elements):
            raise TensorError("an array of Media needs type='image', 'audio' or 'video'")
        raise TensorError("object array mixes element kinds: expected all str, bytes or Media")
    raise TensorError(f"unsupported dtype {array.dtype}: supported are {_SUPPORTED}")


def fixed_flat(array: np.ndarray, name: str) -> np.ndarray:
    """``array`` as a flat C-contiguous little-endian array of ``name``'s dtype."""
    target = FIXED_DTYPES[name]
    source = array.dtype
    if (source.kind, source.itemsize) != (target.kind, target.itemsize):
        _check_conversion(array, name)
    return np.asarray(array, dtype=target, order="C").reshape(-1)


def _check_conversion(array: np.ndarray, name: str) -> None:
    kind = array.dtype.kind
    target = FIXED_DTYPES[name]
    allowed = {"b": "b", "i": "biu", "u": "biu", "f": "biuf"}[target.kind]
    if kind not in allowed:
        raise TensorError(f"cannot store values of dtype {array.dtype} as {name}")
    if target.kind in "iu" and array.size:
        info = np.iinfo(target)
        low, high = array.min(), array.max()
        if low < info.min or high > info.max:
            raise TensorError(f"values {low}..{high} do not fit {name} ({info.min}..{info.max})")


def variable_flat(array: np.ndarray, name: str) -> list[Any]:
    """The elements of a str/object array, checked against type ``name``."""
    if array.dtype.kind not in "UO" or (array.dtype.kind == "U" and name != "string"):
        raise TensorError(f"cannot store values of dtype {array.dtype} as {name}")
    return check_elements(array.reshape(-1).tolist(), name)


def check_elements(elements: list[Any], name: str) -> list[Any]:
    """Refuse elements of the wrong class for a variable-size type; binary becomes bytes."""
    classes = _ELEMENT_CLASSES[name]
    for index, element in enumerate(elements):
        if not isinstance(element, classes):
            wanted = "Media" if name in MEDIA_TYPES else classes[0].__name__
            raise TensorError(
                f"{name} element {index} is a {type(element).__name__}; expected {wanted}"
            )
    if name == "binary":
        return [bytes(element) for element in elements]
    return elements


def from_numpy(array: Any, name: str | None) -> tuple[str, tuple[int, ...], Flat]:
    """(type, shape, flat elements) of a numpy array (or anything ``np.asarray`` accepts)."""
    array = np.asarray(array)
    name = infer_type(array) if name is None else check_type(name)
    shape = tuple(int(dim) for dim in array.shape)
    if name in FIXED_DTYPES:
        return name, shape, fixed_flat(array, name)
    return name, shape, variable_flat(array, name)


def from_values(name: str, values: Any, shape: Any | None) -> tuple[str, tuple[int, ...], Flat]:
    """(type, shape, flat elements) of a flat list of values and an optional shape."""
    name = check_type(name)
    if not isinstance(values, list | tuple):
        raise TensorError(f"values must be a flat list, not {type(values).__name__}")
    dims = check_shape((len(values),) if shape is None else shape, len(values))
    if name not in FIXED_DTYPES:
        return name, dims, check_elements(list(values), name)
    return name, dims, _fixed_from_values(list(values), name)


def _fixed_from_values(values: list[Any], name: str) -> np.ndarray:
    target = FIXED_DTYPES[name]
    classes = _VALUE_CLASSES[target.kind]
    for index, value in enumerate(values):
        if not isinstance(value, classes):
            raise TensorError(
                f"{name} value {index} is a {type(value).__name__}; expected "
                + " or ".join(cls.__name__ for cls in classes)
            )
    if target.kind in "iu" and values:
        info = np.iinfo(target)
        low, high = int(min(values)), int(max(values))
        if low < info.min or high > info.max:
            raise TensorError(f"values {low}..{high} do not fit {name} ({info.min}..{info.max})")
    return np.array(values, dtype=target)


def from_scalar(value: Any) -> tuple[str, tuple[int, ...], Flat]:
    """(type, shape, flat elements) of a Python bool, int, float, str or bytes."""
    if isinstance(value, bool):
        return "boolean", (), np.array([value], dtype=FIXED_DTYPES["boolean"])
    if isinstance(value, int):
        if not -(1 << 63) <= value < 1 << 63:
            raise TensorError(f"int {value} does not fit i64")
        return "i64", (), np.array([value], dtype=FIXED_DTYPES["i64"])
    if isinstance(value, float):
        return "f64", (), np.array([value], dtype=FIXED_DTYPES["f64"])
    if isinstance(value, str):
        return "string", (), [value]
    if isinstance(value, bytes | bytearray | memoryview):
        return "binary", (), [bytes(value)]
    raise TensorError(
        f"cannot serialize a {type(value).__name__}: expected a Tensor, a numpy array, "
        "bool, int, float, str or bytes"
    )
