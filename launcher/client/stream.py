"""Streaming uploads of the client: tensors to byte pieces, pieces to 1 MiB chunk messages.

Nothing here builds a whole payload: a numpy array's bytes travel as zero-copy views from
``runtime.tensor.serialize_parts`` and a file is read block by block, so a 1 GiB param costs
about one chunk of extra memory.

CreateState's chunk messages are sent already serialized (``create_state_wire``): each is its
few bytes of protobuf framing joined with its slices of the pieces, one copy of the data,
where building a ``ParamChunk`` and serializing it copied every chunk three times (which made
the client, not the launcher, the slowest part of a large upload). AddEntries' chunks are sent
the same way (``add_entries_wire``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy

from launcher.client.requests import need_dict, need_list, need_str
from launcher.errors import invalid
from launcher.v1 import dataset_pb2, model_pb2

CHUNK_SIZE = 1 << 20

Piece = bytes | memoryview


class Payload:
    """A known number of bytes, delivered as pieces when iterated (possibly lazily)."""

    def __init__(self, size: int, pieces: Iterable[Piece]) -> None:
        self.size = size
        self.pieces = pieces


def _tensor_module() -> Any:
    # Imported late: the codec lives in the worker-side package and may load numpy-heavy code.
    from runtime import tensor

    return tensor


def _array_tensor(array: numpy.ndarray) -> Any:
    """Strings and bytes arrays become string/binary tensors; others pass to the codec as is."""
    if array.dtype.kind not in "USO":
        return array
    values = array.ravel().tolist()
    if all(isinstance(v, str) for v in values):
        kind = "string"
    elif all(isinstance(v, bytes) for v in values):
        kind = "binary"
    else:
        raise ValueError("elements must all be numbers, all strings or all bytes")
    return _tensor_module().Tensor.from_values(kind, values, tuple(array.shape))


def tensor_payload(value: object, name: str) -> Payload:
    """The serialized bytes of one tensor (already-serialized bytes pass through unchanged)."""
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            view = memoryview(value).cast("B")
        except TypeError as exc:
            raise invalid(name, f"serialized tensor bytes must be contiguous: {exc}") from None
        return Payload(view.nbytes, [view])
    try:
        if isinstance(value, list | tuple):
            if not value:
                raise ValueError("an empty list has no element type; use a numpy array")
            array = numpy.asarray(value)
            # Text would come back as fixed-width items (bytes lose trailing zeros, mixed
            # lists turn numbers into text): build text arrays from the original objects.
            value = numpy.asarray(value, dtype=object) if array.dtype.kind in "USO" else array
        if isinstance(value, numpy.ndarray):
            value = _array_tensor(value)
        size, pieces = _tensor_module().serialize_parts(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise invalid(name, f"not a tensor: {exc}") from None
    return Payload(size, pieces)


def tensors_payload(value: object, name: str) -> Payload:
    """A list of tensors: the concatenation of their serialized bytes (``name[j]`` per tensor)."""
    tensors = need_list(value, name)
    payloads = [tensor_payload(t, f"{name}[{j}]") for j, t in enumerate(tensors)]
    pieces = [piece for p in payloads for piece in p.pieces]
    return Payload(sum(p.size for p in payloads), pieces)


def bytes_payload(value: object, name: str) -> Payload:
    """State key data: bytes-like, or a path whose file is read block by block."""
    if isinstance(value, os.PathLike):
        path = Path(value)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise invalid(name, f"cannot read {path}: {exc.strerror}") from None
        return Payload(size, _read_blocks(path))
    if isinstance(value, bytes | bytearray | memoryview):
        view = memoryview(value).cast("B")
        return Payload(view.nbytes, [view])
    raise invalid(name, f"expected bytes or a file path, got {type(value).__name__}")


def _read_blocks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as file:
        while block := file.read(CHUNK_SIZE):
            yield block


def chunks(pieces: Iterable[Piece], size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Re-cut pieces into blocks of exactly ``size`` bytes (the last may be shorter)."""
    buffer = bytearray()
    for piece in pieces:
        view = memoryview(piece).cast("B")
        pos = 0
        while pos < len(view):
            if not buffer and len(view) - pos >= size:
                yield bytes(view[pos : pos + size])
                pos += size
                continue
            take = min(size - len(buffer), len(view) - pos)
            buffer += view[pos : pos + take]
            pos += take
            if len(buffer) == size:
                yield bytes(buffer)
                buffer.clear()
    if buffer:
        yield bytes(buffer)


def _varint(value: int) -> bytes:
    """``value`` (>= 0) as a protobuf base-128 varint."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def param_chunk_prefix(param_index: int, size: int) -> bytes:
    """The serialized ``CreateStateRequest{chunk: ParamChunk{param_index, data}}`` less the
    ``size`` bytes of ``data`` that follow it: the encoding protobuf itself writes (fields in
    number order, a zero param_index left out)."""
    inner = (b"\x08" + _varint(param_index) if param_index else b"") + b"\x12" + _varint(size)
    return b"\x12" + _varint(len(inner) + size) + inner


def wire_chunks(
    pieces: Iterable[Piece], prefix: Callable[[int], bytes], size: int = CHUNK_SIZE
) -> Iterator[bytes]:
    """The pieces cut as ``chunks`` cuts them, each block as ``prefix(len(block)) + block`` in
    one ``bytes`` built by a single join of views (no intermediate copy)."""
    parts: list[Piece] = []
    held = 0
    for piece in pieces:
        view = memoryview(piece).cast("B")
        pos = 0
        while pos < len(view):
            take = min(size - held, len(view) - pos)
            parts.append(view[pos : pos + take])
            held += take
            pos += take
            if held == size:
                parts.insert(0, prefix(held))
                yield b"".join(parts)
                parts.clear()
                held = 0
    if held:
        parts.insert(0, prefix(held))
        yield b"".join(parts)


def build_params(params: object) -> tuple[list[model_pb2.Param], list[tuple[int, Payload]]]:
    """Header params and the inline payloads (param index, bytes) to stream after the header."""
    out: list[model_pb2.Param] = []
    inline: list[tuple[int, Payload]] = []
    names: set[str] = set()
    for i, item in enumerate(need_list(params, "params")):
        path = f"params[{i}]"
        param = need_dict(item, path)
        name = need_str(param.get("name"), f"{path}.name")
        if name in names:
            raise invalid(f"{path}.name", f"duplicate parameter name {name!r}")
        names.add(name)
        data = param.get("data")
        if isinstance(data, Mapping) and data.get("type") == "dataset":
            dataset = model_pb2.DatasetParam(
                dataset_id=need_str(data.get("datasetId"), f"{path}.data.datasetId"),
                dataset_key=need_str(data.get("datasetKey"), f"{path}.data.datasetKey"),
            )
            out.append(model_pb2.Param(name=name, dataset=dataset))
            continue
        if isinstance(data, Mapping) and data.get("type") == "data":
            data = data.get("data")
        elif isinstance(data, Mapping):
            raise invalid(f"{path}.data.type", 'expected "dataset" or "data"')
        payload = tensors_payload(data, f"{path}.data")
        out.append(model_pb2.Param(name=name, inline=model_pb2.InlineParam(byte_size=payload.size)))
        inline.append((i, payload))
    return out, inline


def create_state_requests(
    header: model_pb2.CreateStateHeader, inline: list[tuple[int, Payload]]
) -> Iterator[model_pb2.CreateStateRequest]:
    yield model_pb2.CreateStateRequest(header=header)
    for index, payload in inline:
        for data in chunks(payload.pieces):
            chunk = model_pb2.ParamChunk(param_index=index, data=data)
            yield model_pb2.CreateStateRequest(chunk=chunk)


def create_state_wire(
    header: model_pb2.CreateStateHeader, inline: list[tuple[int, Payload]]
) -> Iterator[bytes]:
    """``create_state_requests`` already serialized: the same messages' bytes, for a call
    made without a request serializer."""
    yield model_pb2.CreateStateRequest(header=header).SerializeToString()
    for index, payload in inline:
        yield from wire_chunks(payload.pieces, functools.partial(param_chunk_prefix, index))


def keyed_payloads(
    value: object, list_name: str, read: Callable[[object, str], Payload]
) -> list[tuple[str, Payload]]:
    """``[{"key", "data"}]`` entries, each ``data`` turned into a payload by ``read``."""
    out: list[tuple[str, Payload]] = []
    for i, item in enumerate(need_list(value, list_name)):
        path = f"{list_name}[{i}]"
        entry = need_dict(item, path)
        key = need_str(entry.get("key"), f"{path}.key")
        out.append((key, read(entry.get("data"), f"{path}.data")))
    return out


def upload_state_requests(
    header: model_pb2.UploadStateHeader, keys: list[tuple[str, Payload]]
) -> Iterator[model_pb2.UploadStateRequest]:
    yield model_pb2.UploadStateRequest(header=header)
    for data in chunks(piece for _, payload in keys for piece in payload.pieces):
        yield model_pb2.UploadStateRequest(chunk=data)


def _add_entries_header(
    dataset_id: str, keys: list[tuple[str, Payload]]
) -> dataset_pb2.AddEntriesRequest:
    header = dataset_pb2.AddEntriesHeader(
        dataset_id=dataset_id,
        keys=[dataset_pb2.AddEntriesHeader.Key(key=k, byte_size=p.size) for k, p in keys],
    )
    return dataset_pb2.AddEntriesRequest(header=header)


def add_entries_requests(
    dataset_id: str, keys: list[tuple[str, Payload]]
) -> Iterator[dataset_pb2.AddEntriesRequest]:
    yield _add_entries_header(dataset_id, keys)
    for data in chunks(piece for _, payload in keys for piece in payload.pieces):
        yield dataset_pb2.AddEntriesRequest(chunk=data)


def entries_chunk_prefix(size: int) -> bytes:
    """The serialized ``AddEntriesRequest{chunk}`` less the ``size`` bytes of data that
    follow it (the field's tag and length, as protobuf writes them)."""
    return b"\x12" + _varint(size)


def add_entries_wire(dataset_id: str, keys: list[tuple[str, Payload]]) -> Iterator[bytes]:
    """``add_entries_requests`` already serialized (one copy of the data, as for
    ``create_state_wire``), for a call made without a request serializer."""
    yield _add_entries_header(dataset_id, keys).SerializeToString()
    pieces = (piece for _, payload in keys for piece in payload.pieces)
    yield from wire_chunks(pieces, entries_chunk_prefix)
