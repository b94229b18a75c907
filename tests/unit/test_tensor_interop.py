"""Byte-for-byte interoperability with the platform's Python client, ``decthings-api`` 0.0.4.

For single f32..u64, boolean and string tensors this codec and that package must produce the
same bytes, and each must decode the other's bytes to the same values. Shapes avoid the
dimensions 2^16 and 2^32, which that package encodes wrongly (TENSOR.md, known bugs).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from runtime._tensor_format import FIXED_DTYPES
from runtime.tensor import Tensor, deserialize, serialize

decthings_tensor = pytest.importorskip("decthings_api.tensor")
DecthingsTensor = decthings_tensor.DecthingsTensor

EXAMPLES = max(200, settings().max_examples)
FIXED = list(FIXED_DTYPES)


def assert_interoperable(ours: Tensor, theirs: Any) -> None:
    data = ours.serialize()
    assert theirs.serialize() == data
    decoded_theirs, end = DecthingsTensor.deserialize(data)
    assert end == len(data)
    assert decoded_theirs.type() == ours.type()
    assert tuple(decoded_theirs.shape()) == ours.shape()
    decoded_ours, _ = deserialize(theirs.serialize())
    for left in (decoded_theirs.numpy(), decoded_ours.numpy()):
        np.testing.assert_array_equal(left, ours.numpy())


@pytest.mark.parametrize("name", FIXED)
@pytest.mark.parametrize("shape", [(), (0,), (3,), (2, 0, 4), (2, 3, 1), (300,)])
def test_fixed_size_tensor_bytes_equal_decthings_api(name: str, shape: tuple[int, ...]) -> None:
    size = int(np.prod(shape, dtype=np.int64))
    array = (np.arange(size) % 2 == 1) if name == "boolean" else np.arange(size) % 100
    array = array.astype(FIXED_DTYPES[name]).reshape(shape)
    assert_interoperable(Tensor.from_numpy(array), DecthingsTensor(array, name, list(shape)))


@pytest.mark.parametrize(
    ("values", "shape"),
    [
        (["hello"], []),
        ([], [0]),
        (["", "é", "日本語", "a" * 300], [2, 2]),
        (["x" * 70_000], [1]),
    ],
)
def test_string_tensor_bytes_equal_decthings_api(values: list[str], shape: list[int]) -> None:
    ours = Tensor.from_values("string", values, tuple(shape))
    assert_interoperable(ours, DecthingsTensor(values, "string", shape))


def test_python_scalars_match_decthings_api() -> None:
    assert serialize(2.5) == DecthingsTensor([2.5], "f64", []).serialize()
    assert serialize(-7) == DecthingsTensor([-7], "i64", []).serialize()
    assert serialize(True) == DecthingsTensor([True], "boolean", []).serialize()
    assert serialize("s") == DecthingsTensor(["s"], "string", []).serialize()


@st.composite
def interoperable_arrays(draw: st.DrawFn) -> tuple[str, np.ndarray]:
    name = draw(st.sampled_from([*FIXED, "string"]))
    shape = draw(st.lists(st.integers(0, 4), max_size=3).map(tuple))
    if name == "string":
        return name, draw(hnp.arrays(object, shape, elements=st.text(max_size=8)))
    return name, draw(hnp.arrays(FIXED_DTYPES[name], shape))


@settings(max_examples=EXAMPLES, deadline=None)
@given(interoperable_arrays())
def test_random_tensors_are_byte_identical_with_decthings_api(case: tuple[str, np.ndarray]) -> None:
    name, array = case
    ours = Tensor.from_numpy(array, name)
    theirs = DecthingsTensor(array, name, list(array.shape))
    data = ours.serialize()
    assert theirs.serialize() == data
    decoded_theirs = DecthingsTensor.deserialize(data)[0].numpy()
    decoded_ours = deserialize(theirs.serialize())[0].numpy()
    for decoded in (decoded_theirs, decoded_ours):
        assert decoded.shape == array.shape
        if name == "string":
            assert decoded.tolist() == array.tolist()
        else:
            assert decoded.tobytes() == array.tobytes()
