"""Property tests: random tensors round trip; no input makes a decoder fail other than cleanly.

Each test runs about 200 examples, or more when a larger profile (``--hypothesis-profile=long``)
is loaded. The stream validator is checked against ``deserialize_many`` under random chunkings.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from runtime._tensor_format import FIXED_DTYPES
from runtime.tensor import (
    TYPE_CODES,
    Media,
    StreamValidator,
    Tensor,
    TensorError,
    TensorInfo,
    deserialize_many,
    serialize_many,
    tensor_extent,
)

pytestmark = pytest.mark.fuzz

EXAMPLES = max(200, settings().max_examples)
PROPERTY = settings(max_examples=EXAMPLES, deadline=None)

shapes = st.lists(st.integers(0, 3), max_size=4).map(tuple)
media = st.builds(
    Media,
    format=st.text(max_size=8),
    data=st.binary(max_size=16),
)
VARIABLE_ELEMENTS: dict[str, st.SearchStrategy[Any]] = {
    "string": st.text(max_size=12),
    "binary": st.binary(max_size=12),
    "image": media,
    "audio": media,
    "video": media,
}


@st.composite
def tensors(draw: st.DrawFn) -> Tensor:
    name = draw(st.sampled_from(list(TYPE_CODES)))
    shape = draw(shapes)
    count = int(np.prod(shape, dtype=np.int64))
    if name in FIXED_DTYPES:
        array = draw(hnp.arrays(FIXED_DTYPES[name], shape))
        return Tensor.from_numpy(array, name)
    values = draw(st.lists(VARIABLE_ELEMENTS[name], min_size=count, max_size=count))
    return Tensor.from_values(name, values, shape)


def same_values(left: Tensor, right: Tensor) -> bool:
    if left.type() in FIXED_DTYPES:
        return np.array_equal(left.numpy(), right.numpy(), equal_nan=left.type() in ("f32", "f64"))
    return left.numpy().tolist() == right.numpy().tolist()


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def stream_infos(chunks: list[bytes]) -> list[TensorInfo]:
    validator = StreamValidator()
    infos = [info for chunk in chunks for info in validator.feed(chunk)]
    validator.finish()
    return infos


def decoder_infos(data: bytes) -> list[TensorInfo]:
    infos = []
    start = 0
    for tensor in deserialize_many(data):
        end = start + tensor.byte_size()
        assert tensor_extent(data, start) == end
        infos.append(TensorInfo(start, end, tensor.type(), tensor.shape()))
        start = end
    return infos


def outcome(run: Any) -> object:
    """The result of ``run()``, or "invalid" if it raised TensorError (anything else escapes)."""
    try:
        return run()
    except TensorError as error:
        assert error.offset is not None
        return "invalid"


@PROPERTY
@given(st.lists(tensors(), max_size=4))
def test_random_tensors_round_trip(values: list[Tensor]) -> None:
    data = serialize_many(values)
    decoded = deserialize_many(data)
    assert len(decoded) == len(values)
    for original, copy in zip(values, decoded, strict=True):
        assert (copy.type(), copy.shape()) == (original.type(), original.shape())
        assert same_values(original, copy)
        assert copy.byte_size() == original.byte_size() == len(copy.serialize())
    assert serialize_many(decoded) == data


@PROPERTY
@given(st.lists(tensors(), max_size=4), st.lists(st.integers(0, 1 << 16), max_size=6))
def test_stream_validator_agrees_with_decoder_on_valid_streams(
    values: list[Tensor], cuts: list[int]
) -> None:
    data = serialize_many(values)
    assert stream_infos(chunked(data, cuts)) == decoder_infos(data)


@PROPERTY
@given(st.binary(max_size=64), st.lists(st.integers(0, 64), max_size=4))
def test_random_bytes_fail_only_with_tensor_error(data: bytes, cuts: list[int]) -> None:
    decoded = outcome(lambda: decoder_infos(data))
    streamed = outcome(lambda: stream_infos(chunked(data, cuts)))
    assert decoded == streamed
    outcome(lambda: tensor_extent(data))


mutations = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 1 << 16), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 16), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, 1 << 16), st.just(0)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 16), st.just(0)),
)


def mutate(data: bytes, edits: list[tuple[str, int, int]]) -> bytes:
    buf = bytearray(data)
    for kind, where, byte in edits:
        at = where % (len(buf) + 1)
        if kind == "insert":
            buf.insert(at, byte)
        elif kind == "truncate":
            del buf[at:]
        elif at < len(buf):
            if kind == "set":
                buf[at] = byte
            else:
                del buf[at]
    return bytes(buf)


@PROPERTY
@given(
    st.lists(tensors(), min_size=1, max_size=3),
    st.lists(mutations, min_size=1, max_size=3),
    st.lists(st.integers(0, 1 << 16), max_size=4),
)
def test_mutated_encodings_fail_only_with_tensor_error_and_stream_agrees(
    values: list[Tensor], edits: list[tuple[str, int, int]], cuts: list[int]
) -> None:
    data = mutate(serialize_many(values), edits)
    decoded = outcome(lambda: decoder_infos(data))
    streamed = outcome(lambda: stream_infos(chunked(data, cuts)))
    assert decoded == streamed
    for cut in cuts:
        outcome(lambda cut=cut: tensor_extent(data, cut % (len(data) + 1)))
