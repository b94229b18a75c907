"""Incremental validation of a stream of concatenated tensors arriving in arbitrary chunks.

Owns ``StreamValidator`` and ``TensorInfo``. The validator is a byte-level state machine: it
keeps at most one varint, one media format name (255 bytes) and a UTF-8 decoder's few pending
bytes, and skips element payloads without buffering them, so its memory does not grow with the
tensors. It accepts exactly the streams that ``deserialize_many`` accepts.
"""

from __future__ import annotations

import codecs
from array import array
from enum import Enum, auto
from typing import NamedTuple

from runtime._tensor_decode import byte_view, check_booleans, element_count
from runtime._tensor_format import (
    CODE_TYPES,
    ELEMENT_SIZES,
    MAX_ELEMENTS,
    VARINT_WIDTHS,
    TensorError,
)

#: Strings are UTF-8-checked in slices of this size, so a huge chunk never becomes a huge str.
_UTF8_SLICE = 64 << 10


class TensorInfo(NamedTuple):
    """A complete tensor found in a stream: its byte range, type and shape (a tuple: a
    stream of a million tiny tensors makes a million of them)."""

    start: int
    end: int
    type: str
    shape: tuple[int, ...]


#: Fixed-size types by type code, with their element sizes (the fast path's table).
_FIXED_CODES: dict[int, tuple[str, int]] = {
    code: (name, ELEMENT_SIZES[name]) for code, name in CODE_TYPES.items() if name in ELEMENT_SIZES
}


class _Phase(Enum):
    TYPE = auto()
    NDIMS = auto()
    DIM = auto()
    FIXED_DATA = auto()
    SECTION_LENGTH = auto()
    ELEMENT_LENGTH = auto()
    STRING_DATA = auto()
    BINARY_DATA = auto()
    FORMAT_LENGTH = auto()
    FORMAT = auto()
    MEDIA_DATA = auto()


class StreamValidator:
    """Validates concatenated tensors fed in chunks; reports each tensor as it completes."""

    def __init__(self, max_tensors: int | None = None) -> None:
        self._max_tensors = max_tensors
        self._tensors = 0
        self._completed = 0
        self._offset = 0
        self._base = 0  # stream offset of the chunk being fed
        self._failure: TensorError | None = None
        self._phase = _Phase.TYPE
        self._start = 0
        self._type = ""
        self._ndims = 0
        self._dims: list[int] = []
        self._count = 0
        self._varint = bytearray()
        self._varint_at = 0  # stream offset of the varint being read
        self._left = 0  # bytes left in the current fixed payload or element
        self._section_left = 0
        self._section_length = 0
        self._elements_left = 0
        self._format = bytearray()
        self._format_length = 0
        self._format_at = 0
        self._utf8 = codecs.getincrementaldecoder("utf-8")()

    @property
    def offset(self) -> int:
        """Bytes fed so far."""
        return self._offset

    @property
    def completed(self) -> int:
        """Tensors completed so far; after a failed ``feed``, those completed before the byte
        that failed (so the failing tensor's index, without re-feeding anything)."""
        return self._completed

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[TensorInfo]:
        """Validate the next bytes; return the tensors that they complete."""
        completed: list[TensorInfo] = []
        self._feed(chunk, completed, None)
        return completed

    def feed_ranges(
        self, chunk: bytes | bytearray | memoryview, starts: array, ends: array
    ) -> None:
        """Validate the next bytes; append the byte range of each tensor they complete to
        ``starts`` and ``ends`` (``array('Q')``): no object a tensor, for callers that need
        only where each tensor lies."""
        completed: list[TensorInfo] = []
        try:
            self._feed(chunk, completed, (starts, ends))
        finally:  # the tensors completed before a failing byte are kept too
            starts.extend([info.start for info in completed])
            ends.extend([info.end for info in completed])

    def _feed(
        self,
        chunk: bytes | bytearray | memoryview,
        completed: list[TensorInfo],
        ranges: tuple[array, array] | None,
    ) -> None:
        if self._failure is not None:
            raise self._failure
        view = byte_view(chunk)
        self._base = self._offset
        pos = 0
        try:
            while pos < len(view):
                if self._phase is _Phase.TYPE:
                    if ranges is not None and completed:  # keep the ranges in stream order
                        ranges[0].extend([info.start for info in completed])
                        ranges[1].extend([info.end for info in completed])
                        completed.clear()
                    pos = self._whole_fixed(view, pos, completed, ranges)
                    if pos == len(view):
                        break
                pos = self._step(view, pos, completed)
        except TensorError as error:
            self._failure = error
            raise
        self._offset += len(view)

    def finish(self) -> None:
        """Refuse a stream that ends inside a tensor."""
        if self._failure is not None:
            raise self._failure
        if self._phase is not _Phase.TYPE:
            self._failure = TensorError(
                f"truncated stream: it ends inside the {self._type or 'tensor'} starting at "
                f"byte {self._start}",
                self._offset,
            )
            raise self._failure

    def _whole_fixed(
        self,
        view: memoryview,
        pos: int,
        completed: list[TensorInfo],
        ranges: tuple[array, array] | None,
    ) -> int:
        """The fast path: consume the tensors that lie wholly in ``view`` from ``pos`` and are
        of a fixed-size type with one-byte dimensions (the common case, and a flood of tiny
        tensors); stop at the first that is not (the byte machine takes it, and any error).
        With ``ranges``, each tensor's end goes to ``ranges[1]`` and, the tensors of a run
        being contiguous, the starts are filled in after the run."""
        end = len(view)
        base = self._base
        first = pos
        room = end if self._max_tensors is None else self._max_tensors - self._tensors
        fixed = _FIXED_CODES
        append = completed.append
        ends = array("Q") if ranges is not None else None
        found = 0
        try:
            while pos + 2 <= end and found < room:
                kind = fixed.get(view[pos])
                if kind is None:
                    break
                ndims = view[pos + 1]
                at = pos + 2 + ndims
                if ndims == 0:
                    dims: tuple[int, ...] = ()
                    count = 1
                else:
                    if at > end:
                        break
                    dims = tuple(view[pos + 2 : at])
                    if max(dims) >= 253:  # a longer varint
                        break
                    count = 1
                    for dim in dims:
                        count *= dim
                    if count >= MAX_ELEMENTS:
                        break
                stop = at + count * kind[1]
                if stop > end:
                    break
                if kind[0] == "boolean":
                    check_booleans(view[at:stop], base + at)
                if ends is not None:
                    ends.append(base + stop)
                else:
                    append(TensorInfo(base + pos, base + stop, kind[0], dims))
                found += 1
                pos = stop
        finally:  # also when a boolean byte fails: the tensors before it are complete
            self._tensors += found
            self._completed += found
            if ranges is not None and ends is not None and found:
                ranges[0].append(base + first)
                ranges[0].extend(ends[:-1])
                ranges[1].extend(ends)
        return pos

    def _step(self, view: memoryview, pos: int, completed: list[TensorInfo]) -> int:
        phase = self._phase
        if phase is _Phase.TYPE:
            return self._on_type(view, pos)
        if phase is _Phase.NDIMS:
            self._ndims = view[pos]
            self._dims = []
            self._phase = _Phase.DIM
            self._after_dims(pos + 1, completed)
            return pos + 1
        if phase is _Phase.DIM:
            dim, pos = self._read_varint(view, pos)
            if dim is not None:
                self._dims.append(dim)
                self._after_dims(pos, completed)
            return pos
        if phase is _Phase.SECTION_LENGTH:
            length, pos = self._read_varint(view, pos)
            if length is not None:
                self._on_section_length(length, pos, completed)
            return pos
        if phase is _Phase.ELEMENT_LENGTH:
            if self._varint or self._type not in ("string", "binary"):
                return self._on_element_length(view, pos, completed)
            pos = self._whole_elements(view, pos, completed)
            if pos < len(view) and self._phase is _Phase.ELEMENT_LENGTH:
                return self._on_element_length(view, pos, completed)
            return pos
        if phase is _Phase.FORMAT_LENGTH:
            return self._on_format_length(view, pos, completed)
        if phase is _Phase.FORMAT:
            return self._on_format(view, pos, completed)
        return self._skip_payload(view, pos, completed)

    def _on_type(self, view: memoryview, pos: int) -> int:
        at = self._base + pos
        if self._max_tensors is not None and self._tensors >= self._max_tensors:
            raise TensorError(f"stream holds more than {self._max_tensors} tensors", at)
        name = CODE_TYPES.get(view[pos])
        if name is None:
            raise TensorError(f"unknown type code {view[pos]}", at)
        self._tensors += 1
        self._start = at
        self._type = name
        self._phase = _Phase.NDIMS
        return pos + 1

    def _read_varint(self, view: memoryview, pos: int) -> tuple[int | None, int]:
        """Collect a varint across chunks: (value, or None while incomplete; new position)."""
        pending = self._varint
        if not pending:
            self._varint_at = self._base + pos
            if view[pos] < 253:
                return view[pos], pos + 1
        needed = (1 + VARINT_WIDTHS[pending[0] if pending else view[pos]]) - len(pending)
        taken = view[pos : pos + needed]
        pending += taken
        if len(taken) < needed:
            return None, pos + len(taken)
        value = int.from_bytes(pending[1:], "big")
        pending.clear()
        return value, pos + needed

    def _after_dims(self, pos: int, completed: list[TensorInfo]) -> None:
        if len(self._dims) < self._ndims:
            return
        self._count = element_count(tuple(self._dims), self._start)
        if self._type in ELEMENT_SIZES:
            self._left = self._count * ELEMENT_SIZES[self._type]
            self._phase = _Phase.FIXED_DATA
            if self._left == 0:
                self._complete(pos, completed)
        else:
            self._phase = _Phase.SECTION_LENGTH

    def _on_section_length(self, length: int, pos: int, completed: list[TensorInfo]) -> None:
        if self._count > length:
            raise TensorError(
                f"{self._type} section of {length} bytes cannot hold the {self._count} elements "
                f"of shape {tuple(self._dims)}",
                self._varint_at,
            )
        self._section_length = self._section_left = length
        self._elements_left = self._count
        self._after_element(pos, completed)

    def _whole_elements(self, view: memoryview, pos: int, completed: list[TensorInfo]) -> int:
        """Fast path: string/binary elements lying wholly in this chunk, checked in one go.

        Stops (leaving the state machine to carry on, or to report the error) at the first
        element that crosses the chunk, overruns its section or is too big to decode at once.
        """
        end = len(view)
        is_string = self._type == "string"
        # Locals, not attributes: this loop runs once per element of million-element tensors.
        section_left = self._section_left
        elements_left = self._elements_left
        while elements_left and pos < end:
            first = view[pos]
            if first < 253:
                length, data = first, pos + 1
            else:
                data = pos + 1 + VARINT_WIDTHS[first]
                if data > end:
                    break
                length = int.from_bytes(view[pos + 1 : data], "big")
            last = data + length
            if last > end or last - pos > section_left or length > _UTF8_SLICE:
                break
            if is_string:
                try:
                    str(view[data:last], "utf-8")
                except UnicodeDecodeError as error:
                    raise TensorError(
                        f"invalid UTF-8 in string element: {error.reason}",
                        self._base + data + error.start,
                    ) from None
            section_left -= last - pos
            elements_left -= 1
            pos = last
        self._section_left = section_left
        self._elements_left = elements_left
        self._after_element(pos, completed)
        return pos

    def _on_element_length(self, view: memoryview, pos: int, completed: list[TensorInfo]) -> int:
        if not self._varint:
            width = 1 if view[pos] < 253 else 1 + VARINT_WIDTHS[view[pos]]
            if width > self._section_left:
                raise TensorError(
                    f"element length of {width} bytes runs past the end of the {self._type} "
                    f"section ({self._section_left} bytes left of the declared length)",
                    self._base + pos,
                )
            self._section_left -= width
        length, pos = self._read_varint(view, pos)
        if length is None:
            return pos
        if length > self._section_left:
            raise TensorError(
                f"{self._type} element of {length} bytes runs past the end of its section "
                f"({self._section_left} bytes left of the declared length)",
                self._varint_at,
            )
        self._section_left -= length
        self._left = length
        if self._type == "string":
            self._phase = _Phase.STRING_DATA
            self._utf8.reset()
        elif self._type == "binary":
            self._phase = _Phase.BINARY_DATA
        elif length == 0:
            raise TensorError(
                f"{self._type} element is empty: its format length byte is missing",
                self._base + pos,
            )
        else:
            self._phase = _Phase.FORMAT_LENGTH
        if length == 0:
            self._end_element(pos, completed)
        return pos

    def _on_format_length(self, view: memoryview, pos: int, completed: list[TensorInfo]) -> int:
        format_length = view[pos]
        if 1 + format_length > self._left:
            raise TensorError(
                f"format length {format_length} of {self._type} element runs past the element "
                f"({self._left - 1} bytes follow it)",
                self._base + pos,
            )
        self._left -= 1 + format_length
        self._format_length = format_length
        self._format.clear()
        self._format_at = self._base + pos + 1
        self._phase = _Phase.FORMAT
        return self._on_format(view, pos + 1, completed) if format_length == 0 else pos + 1

    def _on_format(self, view: memoryview, pos: int, completed: list[TensorInfo]) -> int:
        wanted = self._format_length - len(self._format)
        taken = view[pos : pos + wanted]
        self._format += taken
        pos += len(taken)
        if len(taken) < wanted:
            return pos
        try:
            str(self._format, "utf-8")
        except UnicodeDecodeError as error:
            raise TensorError(
                f"invalid UTF-8 in {self._type} format: {error.reason}",
                self._format_at + error.start,
            ) from None
        self._phase = _Phase.MEDIA_DATA
        if self._left == 0:
            self._end_element(pos, completed)
        return pos

    def _skip_payload(self, view: memoryview, pos: int, completed: list[TensorInfo]) -> int:
        taken = view[pos : pos + self._left]
        at = self._base + pos
        if self._phase is _Phase.FIXED_DATA and self._type == "boolean":
            check_booleans(taken, at)
        elif self._phase is _Phase.STRING_DATA:
            for start in range(0, len(taken), _UTF8_SLICE):
                self._check_utf8(taken[start : start + _UTF8_SLICE], at + start, final=False)
        self._left -= len(taken)
        pos += len(taken)
        if self._left == 0:
            if self._phase is _Phase.FIXED_DATA:
                self._complete(pos, completed)
            else:
                self._end_element(pos, completed)
        return pos

    def _check_utf8(self, data: memoryview | bytes, at: int, final: bool) -> None:
        pending = len(self._utf8.getstate()[0])
        try:
            self._utf8.decode(data, final)
        except UnicodeDecodeError as error:
            raise TensorError(
                f"invalid UTF-8 in string element: {error.reason}", at - pending + error.start
            ) from None

    def _end_element(self, pos: int, completed: list[TensorInfo]) -> None:
        if self._phase is _Phase.STRING_DATA:
            self._check_utf8(b"", self._base + pos, final=True)
        self._elements_left -= 1
        self._after_element(pos, completed)

    def _after_element(self, pos: int, completed: list[TensorInfo]) -> None:
        if self._elements_left:
            if self._section_left == 0:
                raise TensorError(
                    f"{self._type} section of {self._section_length} bytes ends with "
                    f"{self._elements_left} elements still missing",
                    self._base + pos,
                )
            self._phase = _Phase.ELEMENT_LENGTH
        elif self._section_left:
            raise TensorError(
                f"{self._type} section declares {self._section_length} bytes but its "
                f"{self._count} elements use {self._section_length - self._section_left}",
                self._base + pos,
            )
        else:
            self._complete(pos, completed)

    def _complete(self, pos: int, completed: list[TensorInfo]) -> None:
        end = self._base + pos
        completed.append(TensorInfo(self._start, end, self._type, tuple(self._dims)))
        self._completed += 1
        self._phase = _Phase.TYPE
        self._type = ""
