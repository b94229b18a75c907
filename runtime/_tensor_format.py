"""Facts of the tensor wire format (TENSOR.md) shared by the codec and the stream validator.

Owns the type table, the error type, the media element type and the varint encoding.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

TYPE_CODES: dict[str, int] = {
    "f32": 1,
    "f64": 2,
    "i8": 3,
    "i16": 4,
    "i32": 5,
    "i64": 6,
    "u8": 7,
    "u16": 8,
    "u32": 9,
    "u64": 10,
    "string": 11,
    "binary": 12,
    "boolean": 13,
    "image": 14,
    "audio": 15,
    "video": 16,
}
CODE_TYPES: dict[int, str] = {code: name for name, code in TYPE_CODES.items()}

#: Fixed-size types and their little-endian numpy dtypes; the element size is the itemsize.
FIXED_DTYPES: dict[str, np.dtype] = {
    "f32": np.dtype("<f4"),
    "f64": np.dtype("<f8"),
    "i8": np.dtype("i1"),
    "i16": np.dtype("<i2"),
    "i32": np.dtype("<i4"),
    "i64": np.dtype("<i8"),
    "u8": np.dtype("u1"),
    "u16": np.dtype("<u2"),
    "u32": np.dtype("<u4"),
    "u64": np.dtype("<u8"),
    "boolean": np.dtype("?"),
}
ELEMENT_SIZES: dict[str, int] = {name: dtype.itemsize for name, dtype in FIXED_DTYPES.items()}
MEDIA_TYPES = frozenset({"image", "audio", "video"})
VARIABLE_TYPES = frozenset({"string", "binary"}) | MEDIA_TYPES

MAX_DIMS = 255
MAX_FORMAT_BYTES = 255
#: Shapes whose element count reaches this are refused even where the bytes cannot be counted
#: (the stream validator): no real tensor is that large, and numpy could not index it.
MAX_ELEMENTS = 1 << 63


class TensorError(ValueError):
    """Any problem encoding or decoding a tensor; ``offset`` is the byte where it was found."""

    def __init__(self, problem: str, offset: int | None = None) -> None:
        super().__init__(problem if offset is None else f"{problem} (at byte {offset})")
        self.problem = problem
        self.offset = offset


@dataclass(frozen=True)
class Media:
    """One element of an image, audio or video tensor: a format name and the media bytes."""

    format: str
    data: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.format, str):
            raise TensorError(f"media format must be a str, not {type(self.format).__name__}")
        if len(self.format.encode()) > MAX_FORMAT_BYTES:
            raise TensorError(f"media format is longer than {MAX_FORMAT_BYTES} UTF-8 bytes")
        if isinstance(self.data, bytearray | memoryview):
            object.__setattr__(self, "data", bytes(self.data))
        elif not isinstance(self.data, bytes):
            raise TensorError(f"media data must be bytes, not {type(self.data).__name__}")


_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
#: Varint marker byte -> number of payload bytes that follow it.
VARINT_WIDTHS = {253: 2, 254: 4, 255: 8}
MAX_VARINT = (1 << 64) - 1


def varint_size(value: int) -> int:
    """Length of the shortest encoding of ``value``."""
    if value < 253:
        return 1
    if value < 1 << 16:
        return 3
    if value < 1 << 32:
        return 5
    return 9


def encode_varint(value: int) -> bytes:
    """The shortest encoding of ``value`` (0 <= value < 2^64)."""
    if value < 0 or value > MAX_VARINT:
        raise TensorError(f"varint value {value} is outside 0..2^64-1")
    if value < 253:
        return bytes((value,))
    if value < 1 << 16:
        return b"\xfd" + _U16.pack(value)
    if value < 1 << 32:
        return b"\xfe" + _U32.pack(value)
    return b"\xff" + _U64.pack(value)


def read_varint(buf: memoryview, pos: int, end: int, what: str) -> tuple[int, int]:
    """Decode the varint at ``buf[pos:end]``: (value, position after it). Any width is accepted."""
    if pos >= end:
        raise TensorError(f"truncated data: {what} is missing", pos)
    first = buf[pos]
    if first < 253:
        return first, pos + 1
    width = VARINT_WIDTHS[first]
    if pos + 1 + width > end:
        raise TensorError(
            f"truncated data: {what} needs {1 + width} bytes but {end - pos} remain", pos
        )
    return int.from_bytes(buf[pos + 1 : pos + 1 + width], "big"), pos + 1 + width
