"""The tensor codec: the platform's binary tensor format (TENSOR.md), byte-exact.

Owns the public API: ``Tensor``, ``serialize``/``serialize_parts``/``serialize_many``,
``deserialize``/``deserialize_many``, ``tensor_extent`` and the incremental
``StreamValidator``. Fixed-size tensors are decoded as zero-copy numpy views of the input, and
encoded from numpy arrays without copying them where byte order and layout already match.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runtime import _tensor_encode as encode
from runtime._serialized import SerializedTensor
from runtime._tensor_decode import byte_view, fixed_end, read_elements, read_header
from runtime._tensor_format import (
    FIXED_DTYPES,
    TYPE_CODES,
    Media,
    TensorError,
    encode_varint,
    varint_size,
)
from runtime._tensor_stream import StreamValidator, TensorInfo

__all__ = [
    "TYPE_CODES",
    "Media",
    "StreamValidator",
    "SerializedTensor",
    "Tensor",
    "TensorError",
    "TensorInfo",
    "deserialize",
    "deserialize_many",
    "serialize",
    "serialize_many",
    "serialize_parts",
    "tensor_extent",
]

Piece = bytes | memoryview


class Tensor:
    """One tensor: a type name, a shape and its elements in row-major order.

    Build one with ``from_numpy``, ``from_values`` or ``deserialize``. Fixed-size data is kept
    as a flat little-endian numpy array (possibly a view of the caller's array or of the decoded
    buffer); variable-size data as a list of str, bytes or Media.
    """

    __slots__ = ("_type", "_shape", "_flat", "_body")

    def __init__(self, type: str, shape: tuple[int, ...], flat: encode.Flat) -> None:
        self._type = type
        self._shape = shape
        self._flat = flat
        self._body: tuple[int, list[Piece]] | None = None

    def type(self) -> str:
        return self._type

    def shape(self) -> tuple[int, ...]:
        return self._shape

    def numpy(self) -> np.ndarray:
        """The elements as an array of this shape; a view of the data for fixed-size types."""
        if isinstance(self._flat, np.ndarray):
            flat = self._flat
        else:
            flat = np.empty(len(self._flat), dtype=object)
            flat[:] = self._flat
        try:
            return flat.reshape(self._shape)
        except ValueError as error:
            raise TensorError(f"numpy cannot hold shape {self._shape}: {error}") from None

    def item(self) -> object:
        """The single element as a Python value."""
        count = len(self._flat)
        if count != 1:
            raise TensorError(f"item() needs exactly one element; this tensor has {count}")
        element = self._flat[0]
        return element.item() if isinstance(element, np.generic) else element

    def serialize(self) -> bytes:
        return b"".join(self.parts()[1])

    def byte_size(self) -> int:
        """Length of ``serialize()``, computed without building it."""
        size = 2 + sum(varint_size(dim) for dim in self._shape)
        if isinstance(self._flat, np.ndarray):
            return size + self._flat.nbytes
        body_size = self._element_body()[0]
        return size + varint_size(body_size) + body_size

    def parts(self) -> tuple[int, list[Piece]]:
        """(total length, pieces whose concatenation is the serialized tensor)."""
        head = bytes((TYPE_CODES[self._type], len(self._shape)))
        head += b"".join(encode_varint(dim) for dim in self._shape)
        if isinstance(self._flat, np.ndarray):
            payload = self._flat.view(np.uint8).data
            return len(head) + payload.nbytes, [head, payload]
        body_size, body = self._element_body()
        head += encode_varint(body_size)
        return len(head) + body_size, [head, *body]

    def _element_body(self) -> tuple[int, list[Piece]]:
        if self._body is None:
            pieces: list[Piece] = []
            size = 0
            for element in self._flat:
                if isinstance(element, Media):
                    name = element.format.encode()
                    prefix = bytes((len(name),)) + name
                    length = len(prefix) + len(element.data)
                    pieces += (encode_varint(length), prefix, element.data)
                else:
                    data = element.encode() if isinstance(element, str) else element
                    length = len(data)
                    pieces += (encode_varint(length), data)
                size += varint_size(length) + length
            self._body = (size, pieces)
        return self._body

    @staticmethod
    def from_numpy(array: Any, type: str | None = None) -> Tensor:
        """A tensor of the array's shape; its type comes from the dtype unless given."""
        return Tensor(*encode.from_numpy(array, type))

    @staticmethod
    def from_values(type: str, values: list[Any], shape: tuple[int, ...] | None = None) -> Tensor:
        """A tensor from a flat list of values (row-major); the shape defaults to ``(len,)``."""
        return Tensor(*encode.from_values(type, values, shape))

    def __repr__(self) -> str:
        return f"Tensor(type={self._type!r}, shape={self._shape})"


def _as_tensor(value: Any) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, SerializedTensor):
        return value.tensor()
    if isinstance(value, np.ndarray | np.generic):
        return Tensor.from_numpy(value)
    return Tensor(*encode.from_scalar(value))


def serialize(value: Any) -> bytes:
    """Serialize a Tensor, numpy array or Python scalar (bool, int, float, str, bytes)."""
    return _as_tensor(value).serialize()


def serialize_parts(value: Any) -> tuple[int, list[Piece]]:
    """(total length, pieces) of ``serialize(value)``; fixed-size payloads are not copied."""
    return _as_tensor(value).parts()


def serialize_many(values: Any) -> bytes:
    """The concatenation of each value's serialization."""
    return b"".join(piece for value in values for piece in _as_tensor(value).parts()[1])


def deserialize(buf: Any, offset: int = 0) -> tuple[Tensor, int]:
    """Decode the tensor at ``buf[offset:]``: (tensor, offset just past it)."""
    view = byte_view(buf)
    _check_offset(view, offset)
    header = read_header(view, offset)
    if header.type in FIXED_DTYPES:
        end = fixed_end(view, header)
        flat = np.frombuffer(view, FIXED_DTYPES[header.type], header.count, header.body)
        return Tensor(header.type, header.shape, flat), end
    elements, end = read_elements(view, header, build=True)
    return Tensor(header.type, header.shape, elements), end


def deserialize_many(buf: Any) -> list[Tensor]:
    """Decode concatenated tensors until the bytes end; empty input is an empty list."""
    view = byte_view(buf)
    tensors = []
    offset = 0
    while offset < len(view):
        tensor, offset = deserialize(view, offset)
        tensors.append(tensor)
    return tensors


def tensor_extent(buf: Any, offset: int = 0) -> int:
    """Validate the tensor at ``buf[offset:]`` without building it; return its end offset."""
    view = byte_view(buf)
    _check_offset(view, offset)
    header = read_header(view, offset)
    if header.type in FIXED_DTYPES:
        return fixed_end(view, header)
    return read_elements(view, header, build=False)[1]


def _check_offset(view: memoryview, offset: int) -> None:
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise TensorError(f"offset must be a non-negative int, not {offset!r}")
    if offset > len(view):
        raise TensorError(f"offset {offset} is past the end of the {len(view)}-byte buffer")
