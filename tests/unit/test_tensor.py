"""Round trips, exact bytes, encoding rules and zero-copy behaviour of the tensor codec."""

from __future__ import annotations

import tracemalloc
from typing import Any

import numpy as np
import pytest

from runtime.tensor import (
    TYPE_CODES,
    Media,
    Tensor,
    TensorError,
    deserialize,
    deserialize_many,
    serialize,
    serialize_many,
    serialize_parts,
    tensor_extent,
)

SAMPLES: dict[str, list[Any]] = {
    "f32": [1.5, -0.0, float("inf")],
    "f64": [2.25, -1e300, 0.0],
    "i8": [-128, 0, 127],
    "i16": [-32768, 1, 32767],
    "i32": [-(2**31), 2, 2**31 - 1],
    "i64": [-(2**63), 3, 2**63 - 1],
    "u8": [0, 1, 255],
    "u16": [0, 2, 65535],
    "u32": [0, 3, 2**32 - 1],
    "u64": [0, 4, 2**64 - 1],
    "boolean": [True, False, True],
    "string": ["", "héllo", "日本"],
    "binary": [b"", b"\x00\xff", b"abc"],
    "image": [Media("png", b"\x89PNG"), Media("", b""), Media("jpg", b"")],
    "audio": [Media("wav", b"RIFF"), Media("ogg", b"x"), Media("mp3", b"yz")],
    "video": [Media("mp4", b"\x00"), Media("webm", b""), Media("é" * 127, b"v")],
}


def values_of(tensor: Tensor) -> list[Any]:
    return tensor.numpy().reshape(-1).tolist()


def test_type_codes_are_the_platforms() -> None:
    assert TYPE_CODES == {
        "f32": 1, "f64": 2, "i8": 3, "i16": 4, "i32": 5, "i64": 6, "u8": 7, "u16": 8,
        "u32": 9, "u64": 10, "string": 11, "binary": 12, "boolean": 13, "image": 14,
        "audio": 15, "video": 16,
    }  # fmt: skip


@pytest.mark.parametrize("name", list(SAMPLES))
def test_every_type_round_trips_its_values(name: str) -> None:
    tensor = Tensor.from_values(name, SAMPLES[name], shape=(3, 1))
    data = tensor.serialize()
    decoded, end = deserialize(data)
    assert end == len(data) == tensor.byte_size() == tensor_extent(data)
    assert (decoded.type(), decoded.shape()) == (name, (3, 1))
    assert values_of(decoded) == SAMPLES[name]
    assert decoded.serialize() == data


@pytest.mark.parametrize("name", list(SAMPLES))
def test_scalar_has_no_dimensions_and_one_item(name: str) -> None:
    data = Tensor.from_values(name, SAMPLES[name][1:2], shape=()).serialize()
    assert data[:2] == bytes((TYPE_CODES[name], 0))
    tensor, _ = deserialize(data)
    assert tensor.shape() == () and tensor.numpy().shape == ()
    assert tensor.item() == SAMPLES[name][1]


@pytest.mark.parametrize("name", list(SAMPLES))
def test_zero_length_dimension_is_an_empty_tensor(name: str) -> None:
    data = Tensor.from_values(name, [], shape=(4, 0, 2)).serialize()
    tensor, end = deserialize(data)
    assert end == len(data)
    assert tensor.shape() == (4, 0, 2) and tensor.numpy().size == 0


def test_empty_variable_tensor_has_a_zero_section_length() -> None:
    assert Tensor.from_values("string", [], shape=(0,)).serialize() == b"\x0b\x01\x00\x00"


def test_255_dimensions_round_trip_and_numpy_refusal_is_a_tensor_error() -> None:
    shape = (2,) + (1,) * 254
    data = Tensor.from_values("u8", [7, 9], shape=shape).serialize()
    assert data[1] == 255
    tensor, end = deserialize(data)
    assert end == len(data) and tensor.shape() == shape
    assert tensor.serialize() == data
    with pytest.raises(TensorError, match="numpy cannot hold shape"):
        tensor.numpy()


def test_many_tensors_concatenate_and_decode_in_order() -> None:
    values = [np.arange(3, dtype="<i2"), "s", b"b", True, 7, 1.0, np.zeros((0,), "<f4")]
    data = serialize_many(values)
    assert data == b"".join(serialize(value) for value in values)
    tensors = deserialize_many(data)
    assert [t.type() for t in tensors] == [
        "i16",
        "string",
        "binary",
        "boolean",
        "i64",
        "f64",
        "f32",
    ]
    assert tensors[1].item() == "s" and tensors[4].item() == 7


def test_empty_input_is_an_empty_list() -> None:
    assert deserialize_many(b"") == []


VARINTS = [
    (0, "00"),
    (252, "fc"),
    (253, "fd00fd"),
    (2**16 - 1, "fdffff"),
    (2**16, "fe00010000"),
    (2**32 - 1, "feffffffff"),
    (2**32, "ff0000000100000000"),
    (2**64 - 1, "ffffffffffffffffff"),
]


@pytest.mark.parametrize(("value", "encoding"), VARINTS)
def test_varint_is_written_in_its_shortest_encoding(value: int, encoding: str) -> None:
    # A shape (0, value) carries the varint without needing `value` elements.
    data = Tensor.from_values("u8", [], shape=(0, value)).serialize()
    assert data == bytes.fromhex("070200" + encoding)
    assert deserialize(data)[0].shape() == (0, value)


@pytest.mark.parametrize(
    "encoding", ["03", "fd0003", "fe00000003", "ff0000000000000003"], ids=["1", "3", "5", "9"]
)
def test_varint_of_any_width_is_accepted(encoding: str) -> None:
    data = bytes.fromhex("0701" + encoding + "0a0b0c")
    tensor, end = deserialize(data)
    assert end == len(data) and tensor.numpy().tolist() == [10, 11, 12]


DTYPES = [
    ("float32", "f32"), ("float64", "f64"), ("int8", "i8"), ("int16", "i16"),
    ("int32", "i32"), ("int64", "i64"), ("uint8", "u8"), ("uint16", "u16"),
    ("uint32", "u32"), ("uint64", "u64"), ("bool", "boolean"),
]  # fmt: skip


@pytest.mark.parametrize(("dtype", "name"), DTYPES)
def test_numpy_dtype_picks_the_type(dtype: str, name: str) -> None:
    array = np.arange(6).astype(dtype).reshape(2, 3)
    tensor, _ = deserialize(serialize(array))
    assert tensor.type() == name
    np.testing.assert_array_equal(tensor.numpy(), array)


def test_big_endian_array_is_written_little_endian() -> None:
    array = np.array([1.0, 2.0], dtype=">f4")
    assert serialize(array) == serialize(array.astype("<f4"))
    assert deserialize(serialize(array))[0].numpy().tolist() == [1.0, 2.0]


def test_non_contiguous_array_is_written_row_major() -> None:
    array = np.arange(12, dtype="<i4").reshape(3, 4)[:, ::2]
    np.testing.assert_array_equal(deserialize(serialize(array))[0].numpy(), array)


def test_str_and_object_arrays_pick_string_and_binary() -> None:
    assert deserialize(serialize(np.array(["a", "bc"])))[0].type() == "string"
    assert deserialize(serialize(np.array(["a"], dtype=object)))[0].type() == "string"
    assert deserialize(serialize(np.array([b"a", b""], dtype=object)))[0].type() == "binary"


def test_media_array_is_encoded_with_the_given_type() -> None:
    array = np.empty(2, dtype=object)
    array[:] = [Media("png", b"1"), Media("gif", b"22")]
    with pytest.raises(TensorError, match="needs type='image'"):
        Tensor.from_numpy(array)
    data = Tensor.from_numpy(array, "image").serialize()
    assert data == b"\x0e\x01\x02\x0d\x05\x03png1\x06\x03gif22"


@pytest.mark.parametrize("dtype", ["complex64", "float16", "datetime64[s]", "S3", "V4"])
def test_unsupported_dtype_is_refused_naming_it(dtype: str) -> None:
    with pytest.raises(TensorError, match=r"unsupported dtype .*supported are float32"):
        serialize(np.zeros(2, dtype=dtype))


@pytest.mark.parametrize(
    ("value", "name"),
    [(True, "boolean"), (-5, "i64"), (0.5, "f64"), ("é", "string"), (b"\x00", "binary")],
)
def test_python_scalar_picks_the_type(value: object, name: str) -> None:
    tensor, _ = deserialize(serialize(value))
    assert (tensor.type(), tensor.shape(), tensor.item()) == (name, (), value)


@pytest.mark.parametrize("value", [2**63, None, [1, 2], Media("png", b"")])
def test_unserializable_value_is_refused(value: object) -> None:
    with pytest.raises(TensorError):
        serialize(value)


@pytest.mark.parametrize(
    ("name", "values", "shape", "message"),
    [
        ("f33", [1], None, "unknown tensor type 'f33'"),
        ("i8", [1, 2], (3,), r"shape \(3,\) needs 3 elements but 2"),
        ("i8", [128], None, r"values 128..128 do not fit i8"),
        ("u64", [-1], None, "do not fit u64"),
        ("u64", [2**64], None, "do not fit u64"),
        ("i32", [1.5], None, "i32 value 0 is a float; expected int or integer"),
        ("boolean", [1], None, "boolean value 0 is a int; expected bool"),
        ("f32", ["x"], None, "f32 value 0 is a str; expected int or float"),
        ("f32", [[1.0]], (1,), "f32 value 0 is a list"),
        ("f32", np.zeros(2), None, "values must be a flat list"),
        ("f32", [], (-1,), "dimensions must be in 0..2"),
        ("f32", [], (True,), "dimensions must be ints"),
        ("f32", [], (0,) * 256, "at most 255"),
        ("f32", [], "ab", "shape must be a tuple"),
        ("string", [b"x"], None, "string element 0 is a bytes; expected str"),
        ("binary", ["x"], None, "binary element 0 is a str; expected bytes"),
        ("image", [b"x"], None, "image element 0 is a bytes; expected Media"),
    ],
)
def test_bad_values_are_refused(name: str, values: Any, shape: Any, message: str) -> None:
    with pytest.raises(TensorError, match=message) as caught:
        Tensor.from_values(name, values, shape)
    assert caught.value.offset is None


def test_from_numpy_with_given_type_converts_only_when_values_fit() -> None:
    assert Tensor.from_numpy(np.array([1, 2]), "u8").serialize() == b"\x07\x01\x02\x01\x02"
    assert Tensor.from_numpy(np.array([1, 2]), "f32").type() == "f32"
    with pytest.raises(TensorError, match="do not fit u8"):
        Tensor.from_numpy(np.array([256]), "u8")
    with pytest.raises(TensorError, match="as string"):
        Tensor.from_numpy(np.array([1]), "string")


def test_media_refuses_bad_format_and_data() -> None:
    with pytest.raises(TensorError, match="longer than 255"):
        Media("x" * 256, b"")
    with pytest.raises(TensorError, match="format must be a str"):
        Media(b"png", b"")  # type: ignore[arg-type]
    with pytest.raises(TensorError, match="data must be bytes"):
        Media("png", "data")  # type: ignore[arg-type]
    assert Media("png", bytearray(b"1")).data == b"1"


def test_item_needs_exactly_one_element() -> None:
    with pytest.raises(TensorError, match="this tensor has 2"):
        Tensor.from_values("i8", [1, 2]).item()
    assert Tensor.from_values("f32", [0.5], shape=(1, 1)).item() == 0.5


def test_decoded_fixed_tensor_is_a_read_only_view_of_immutable_input() -> None:
    data = serialize(np.arange(4, dtype="<f4"))
    array = deserialize(data)[0].numpy()
    assert np.shares_memory(array, np.frombuffer(data, np.uint8))
    assert not array.flags.writeable and array.dtype == np.dtype("<f4")


def test_decoded_fixed_tensor_of_a_bytearray_is_a_writable_view() -> None:
    data = bytearray(serialize(np.arange(4, dtype="<i2")))
    array = deserialize(data)[0].numpy()
    array[0] = 9
    assert data[3:5] == b"\x09\x00"


def test_serialize_parts_streams_the_array_without_copying() -> None:
    array = np.arange(1000, dtype="<f8").reshape(10, 100)
    total, pieces = serialize_parts(array)
    assert total == sum(len(piece) for piece in pieces) == len(serialize(array))
    payload = pieces[-1]
    assert isinstance(payload, memoryview)
    assert np.shares_memory(np.frombuffer(payload, np.uint8), array)
    assert b"".join(pieces) == serialize(array)


def test_256_mib_f32_decodes_and_validates_as_a_view() -> None:
    count = 64 << 20
    data = bytearray(7 + 4 * count)
    data[:7] = b"\x01\x01\xfe" + count.to_bytes(4, "big")
    tracemalloc.start()
    try:
        tensor, end = deserialize(data)
        extent = tensor_extent(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert end == extent == len(data) and tensor.shape() == (count,)
    assert np.shares_memory(tensor.numpy(), np.frombuffer(data, np.uint8))
    assert peak < 1 << 20


HUGE_SHAPE = b"\x01\x02\xff" + (1 << 30).to_bytes(8, "big") + b"\xfe" + (1 << 30).to_bytes(4, "big")


@pytest.mark.parametrize(
    ("data", "message", "offset"),
    [
        (b"\x01", "number of dimensions is missing", 1),
        (b"\x11\x00", "unknown type code 17", 0),
        (b"\x01\x01\xfd\x01", "dimension 0 of the shape needs 3 bytes but 2 remain", 2),
        (b"\x01\x01\x02\x00\x00\x80", "needs 8 bytes but 3 remain", 3),
        (HUGE_SHAPE + b"\x00" * 10, r"needs 4611686018427387904 bytes but 10 remain", 16),
        (b"\x01\x02" + b"\xff" * 18, "overflows", 0),
        (b"\x0d\x00\x07", "invalid boolean byte 7", 2),
        (b"\x0b\x00", "length of the variable-size section is missing", 2),
        (b"\x0b\x00\xfe\xff\xff\xff\xff", "declares 4294967295 bytes but 0 remain", 2),
        (b"\x0b\x01\xfe\x01\x00\x00\x00\x05" + b"\x00" * 5, "cannot hold the 16777216", 7),
        (b"\x0b\x00\x03\x05abc", "runs past the end of its section", 3),
        (b"\x0b\x00\x02\xfd\x00", "length of string element 0 needs 3 bytes but 2", 3),
        (b"\x0b\x01\x02\x02\x01a", "section of 2 bytes ends", 6),
        (b"\x0b\x00\x03\x01ab", "declares 3 bytes but its 1 elements use 2", 5),
        (b"\x0b\x00\x03\x02a\xff", "invalid UTF-8 in string element 0", 5),
        (b"\x0f\x00\x03\x02\x05a", "format length 5 of audio element 0 runs past the element", 4),
        (b"\x10\x00\x01\x00", "video element 0 is empty", 4),
        (b"\x0e\x00\x04\x03\x01\xc3a", "invalid UTF-8 in format of image element 0", 5),
    ],
)
def test_bad_encoding_is_refused_naming_problem_and_offset(
    data: bytes, message: str, offset: int
) -> None:
    for decode in (deserialize_many, tensor_extent):
        with pytest.raises(TensorError, match=message) as caught:
            decode(data)
        assert caught.value.offset == offset
        assert f"at byte {offset}" in str(caught.value)


def test_huge_shape_on_small_input_fails_fast_without_allocating() -> None:
    tracemalloc.start()
    try:
        for data in (HUGE_SHAPE + b"\x00" * 10, b"\x0b\x01\xff" + b"\x0f" * 8 + b"\x05"):
            with pytest.raises(TensorError):
                deserialize(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100_000  # failing fast means allocating nothing the input does not justify


def test_deserialize_at_an_offset_returns_the_end_offset() -> None:
    data = serialize_many([1, "two"])
    first_end = len(serialize(1))
    tensor, end = deserialize(data, first_end)
    assert (tensor.item(), end) == ("two", len(data))
    assert tensor_extent(data, first_end) == len(data)


@pytest.mark.parametrize(
    ("buf", "offset", "message"),
    [
        (b"\x07\x00\x01", 4, "offset 4 is past the end of the 3-byte buffer"),
        (b"\x07\x00\x01", -1, "offset must be a non-negative int"),
        (b"\x07\x00\x01", 3, "type code is missing"),
        ("text", 0, "cannot decode a str: expected bytes-like"),
        (memoryview(b"\x07\x00\x01\x00")[::2], 0, "non-contiguous"),
    ],
)
def test_bad_buffer_or_offset_is_refused(buf: Any, offset: int, message: str) -> None:
    with pytest.raises(TensorError, match=message):
        deserialize(buf, offset)
    with pytest.raises(TensorError, match=message):
        tensor_extent(buf, offset)


def test_two_dimensional_byte_buffer_is_decoded_flat() -> None:
    data = np.frombuffer(serialize(np.int16(5)) + b"\x00\x00", np.uint8).reshape(2, 3)
    assert deserialize(memoryview(data))[0].item() == 5
    assert tensor_extent(memoryview(data)) == 4
