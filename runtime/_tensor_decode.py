"""Parsing one serialized tensor out of a buffer, checking every length before using it.

Owns the decode-side validation of TENSOR.md: header, shape product, fixed-size extents,
variable-size sections and their elements. Lengths are compared with the bytes actually present
before anything is allocated, so a hostile shape fails fast.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime._tensor_format import (
    CODE_TYPES,
    ELEMENT_SIZES,
    MAX_ELEMENTS,
    Media,
    TensorError,
    read_varint,
)


@dataclass(frozen=True)
class Header:
    """A parsed tensor header; ``body`` is the offset of the first byte after the shape."""

    type: str
    shape: tuple[int, ...]
    count: int
    body: int


def byte_view(buf: object) -> memoryview:
    """A flat byte view of any bytes-like object, without copying it."""
    try:
        view = memoryview(buf)  # type: ignore[arg-type]
    except TypeError:
        raise TensorError(f"cannot decode a {type(buf).__name__}: expected bytes-like") from None
    if not view.c_contiguous:
        raise TensorError("cannot decode a non-contiguous buffer")
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def element_count(shape: tuple[int, ...], offset: int) -> int:
    """Product of the shape; refuses products that no tensor could have."""
    if 0 in shape:
        return 0
    count = 1
    for dim in shape:
        count *= dim
        if count >= MAX_ELEMENTS:
            raise TensorError(f"shape {shape} overflows: its element count reaches 2^63", offset)
    return count


def read_header(buf: memoryview, pos: int) -> Header:
    """Parse the type code, dimension count and shape of the tensor at ``pos``."""
    end = len(buf)
    if pos >= end:
        raise TensorError("truncated data: type code is missing", pos)
    name = CODE_TYPES.get(buf[pos])
    if name is None:
        raise TensorError(f"unknown type code {buf[pos]}", pos)
    if pos + 1 >= end:
        raise TensorError("truncated data: number of dimensions is missing", pos + 1)
    ndims = buf[pos + 1]
    cursor = pos + 2
    dims = []
    for index in range(ndims):
        dim, cursor = read_varint(buf, cursor, end, f"dimension {index} of the shape")
        dims.append(dim)
    shape = tuple(dims)
    return Header(name, shape, element_count(shape, pos), cursor)


def fixed_end(buf: memoryview, header: Header) -> int:
    """End offset of a fixed-size tensor's data, checked against the bytes present."""
    needed = header.count * ELEMENT_SIZES[header.type]
    present = len(buf) - header.body
    if needed > present:
        raise TensorError(
            f"truncated data: shape {header.shape} of {header.type} needs {needed} bytes "
            f"but {present} remain",
            header.body,
        )
    end = header.body + needed
    if header.type == "boolean" and needed:
        check_booleans(buf[header.body : end], header.body)
    return end


def check_booleans(data: memoryview, offset: int) -> None:
    """Refuse boolean bytes other than 0 and 1 (``data`` starts at stream byte ``offset``)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    bad = raw > 1
    if bad.any():
        first = int(np.argmax(bad))
        raise TensorError(f"invalid boolean byte {raw[first]}: must be 0 or 1", offset + first)


def variable_section(buf: memoryview, header: Header) -> tuple[int, int]:
    """(start, end) of a variable-size tensor's elements, after its declared length."""
    length, start = read_varint(buf, header.body, len(buf), "length of the variable-size section")
    present = len(buf) - start
    if length > present:
        raise TensorError(
            f"truncated data: {header.type} section declares {length} bytes but {present} remain",
            header.body,
        )
    if header.count > length:
        # Every element takes at least its one-byte length, so this cannot be satisfied.
        raise TensorError(
            f"{header.type} section of {length} bytes cannot hold the {header.count} elements "
            f"of shape {header.shape}",
            header.body,
        )
    return start, start + length


def read_elements(buf: memoryview, header: Header, build: bool) -> tuple[list[object], int]:
    """Validate (and, if ``build``, decode) a variable-size tensor's elements: (elements, end)."""
    start, section_end = variable_section(buf, header)
    name = header.type
    elements: list[object] = []
    cursor = start
    for index in range(header.count):
        if cursor == section_end:
            raise TensorError(
                f"{name} section of {section_end - start} bytes ends with "
                f"{header.count - index} elements still missing",
                cursor,
            )
        length, first = read_varint(buf, cursor, section_end, f"length of {name} element {index}")
        last = first + length
        if last > section_end:
            raise TensorError(
                f"{name} element {index} of {length} bytes runs past the end of its section "
                f"({section_end - first} bytes left of the declared length)",
                cursor,
            )
        if name == "string":
            value: object = _utf8(buf, first, last, f"string element {index}")
        elif name == "binary":
            value = bytes(buf[first:last]) if build else None
        else:
            value = _media(buf, first, last, f"{name} element {index}", build)
        if build:
            elements.append(value)
        cursor = last
    if cursor != section_end:
        raise TensorError(
            f"{name} section declares {section_end - start} bytes but its {header.count} "
            f"elements use {cursor - start}",
            cursor,
        )
    return elements, cursor


def _utf8(buf: memoryview, first: int, last: int, what: str) -> str:
    try:
        return str(buf[first:last], "utf-8")
    except UnicodeDecodeError as error:
        raise TensorError(f"invalid UTF-8 in {what}: {error.reason}", first + error.start) from None


def _media(buf: memoryview, first: int, last: int, what: str, build: bool) -> Media | None:
    if first == last:
        raise TensorError(f"{what} is empty: its format length byte is missing", first)
    format_end = first + 1 + buf[first]
    if format_end > last:
        raise TensorError(
            f"format length {buf[first]} of {what} runs past the element "
            f"({last - first - 1} bytes follow it)",
            first,
        )
    media_format = _utf8(buf, first + 1, format_end, f"format of {what}")
    return Media(media_format, bytes(buf[format_end:last])) if build else None
