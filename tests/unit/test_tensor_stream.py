"""StreamValidator: bounded memory on huge tensors, errors found across chunk boundaries."""

from __future__ import annotations

import tracemalloc
from array import array

import numpy as np
import pytest

from runtime.tensor import (
    Media,
    StreamValidator,
    Tensor,
    TensorError,
    TensorInfo,
    deserialize_many,
    serialize,
    serialize_many,
)

MIB = 1 << 20


def feed_all(
    data: bytes, chunk_size: int, validator: StreamValidator | None = None
) -> list[TensorInfo]:
    validator = validator or StreamValidator()
    view = memoryview(data)
    infos = []
    for start in range(0, len(data), chunk_size):
        infos += validator.feed(view[start : start + chunk_size])
    validator.finish()
    return infos


def decoder_error(data: bytes) -> TensorError:
    with pytest.raises(TensorError) as caught:
        deserialize_many(data)
    return caught.value


@pytest.mark.parametrize("name", ["string", "binary"])
def test_64_mib_tensor_in_1_mib_chunks_keeps_memory_bounded(name: str) -> None:
    element = "é" * (MIB // 2) if name == "string" else b"\xc3" * MIB
    data = Tensor.from_values(name, [element] * 64).serialize()
    assert len(data) > 64 * MIB
    del element
    tracemalloc.start()
    try:
        infos = feed_all(data, MIB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert infos == [TensorInfo(0, len(data), name, (64,))]
    assert peak < 2 * MIB


def test_huge_fixed_tensor_in_chunks_is_reported_once_complete() -> None:
    data = serialize(np.zeros((1024, 1024), dtype="<f8"))
    validator = StreamValidator()
    view = memoryview(data)
    assert validator.feed(view[: len(data) - 1]) == []
    assert validator.feed(view[len(data) - 1 :]) == [TensorInfo(0, len(data), "f64", (1024, 1024))]
    assert validator.offset == len(data)


def test_tensor_infos_carry_stream_offsets() -> None:
    data = serialize_many([np.int8(1), "ab", np.zeros((2, 0), "<f4")])
    assert feed_all(data, 1) == [
        TensorInfo(0, 3, "i8", ()),
        TensorInfo(3, 9, "string", ()),
        TensorInfo(9, 13, "f32", (2, 0)),
    ]


def test_valid_multibyte_character_split_across_chunks_is_accepted() -> None:
    data = serialize("a€b")  # € is three UTF-8 bytes
    for cut in range(1, len(data)):
        validator = StreamValidator()
        assert validator.feed(data[:cut]) + validator.feed(data[cut:]) == [
            TensorInfo(0, len(data), "string", ())
        ]


@pytest.mark.parametrize("bad", [b"\xe2\x82\x41", b"\xe2\x82", b"\xff", b"\xed\xa0\x80"])
def test_invalid_utf8_split_across_chunks_is_caught_at_its_offset(bad: bytes) -> None:
    body = b"ok" + bad + b"z"
    data = serialize("first") + b"\x0b\x00" + bytes((len(body) + 1, len(body))) + body
    expected = decoder_error(data).offset
    assert expected == len(serialize("first")) + 4 + 2
    for cut in range(1, len(data)):
        validator = StreamValidator()
        with pytest.raises(TensorError, match="invalid UTF-8") as caught:
            validator.feed(data[:cut])
            validator.feed(data[cut:])
        assert caught.value.offset == expected


def test_invalid_utf8_in_a_large_string_is_caught_at_its_offset() -> None:
    body = b"a" * (3 * MIB) + b"\xc3\x28" + b"b" * 10
    data = b"\x0b\x00\xfe" + (len(body) + 5).to_bytes(4, "big")
    data += b"\xfe" + len(body).to_bytes(4, "big") + body
    with pytest.raises(TensorError, match="invalid UTF-8") as caught:
        feed_all(data, MIB)
    assert caught.value.offset == 12 + 3 * MIB == decoder_error(data).offset


def test_invalid_media_format_is_caught_across_chunks() -> None:
    element = b"\x02\xc3\x28data"
    data = b"\x0e\x00" + bytes((len(element) + 1, len(element))) + element
    for chunk_size in (1, 2, 3, len(data)):
        with pytest.raises(TensorError, match="invalid UTF-8 in image format") as caught:
            feed_all(data, chunk_size)
        assert caught.value.offset == 5 == decoder_error(data).offset


def test_media_stream_with_empty_format_and_data_is_accepted() -> None:
    data = Tensor.from_values("video", [Media("", b""), Media("mp4", b"x")]).serialize()
    assert feed_all(data, 1) == [TensorInfo(0, len(data), "video", (2,))]


def test_truncated_stream_fails_at_finish() -> None:
    data = serialize_many(["abc", np.arange(3, dtype="<u2")])
    boundaries = {0, len(serialize("abc")), len(data)}
    for cut in range(len(data) + 1):
        validator = StreamValidator()
        validator.feed(data[:cut])
        if cut in boundaries:
            validator.finish()
            continue
        with pytest.raises(TensorError, match="truncated stream") as caught:
            validator.finish()
        assert caught.value.offset == cut


@pytest.mark.parametrize(
    ("data", "message", "offset"),
    [
        (b"\x00", "unknown type code 0", 0),
        (b"\x07\x00\x01\x11", "unknown type code 17", 3),
        (b"\x0d\x01\x02\x01\x02", "invalid boolean byte 2", 4),
        (b"\x0b\x01\x03\x02", "cannot hold the 3 elements", 3),
        (b"\x0b\x00\x03\x01az", "section declares 3 bytes but its 1 elements use 2", 5),
        (b"\x0b\x00\x02\x05z", "runs past the end of its section", 3),
        (b"\x0b\x01\x02\x02\x01a", "ends with 1 elements still missing", 6),
        (b"\x0e\x00\x02\x01\x05", "format length 5", 4),
        (b"\x0e\x00\x01\x00", "is empty", 4),
        (b"\x01\x02\xff" + b"\xff" * 8 + b"\x02", "overflows", 0),
    ],
)
def test_bad_stream_is_refused_with_the_decoders_error(
    data: bytes, message: str, offset: int
) -> None:
    with pytest.raises(TensorError, match=message) as caught:
        feed_all(data, 1)
    assert caught.value.offset == offset
    assert decoder_error(data).offset == offset


def test_max_tensors_is_enforced() -> None:
    data = serialize_many([1, 2, 3])
    assert len(feed_all(data, 4, StreamValidator(max_tensors=3))) == 3
    with pytest.raises(TensorError, match="more than 2 tensors") as caught:
        feed_all(data, 4, StreamValidator(max_tensors=2))
    assert caught.value.offset == 20


def test_validator_stays_failed_after_an_error() -> None:
    validator = StreamValidator()
    with pytest.raises(TensorError):
        validator.feed(b"\x63")
    with pytest.raises(TensorError, match="unknown type code 99"):
        validator.feed(serialize(1))
    with pytest.raises(TensorError, match="unknown type code 99"):
        validator.finish()


def test_non_bytes_chunk_is_refused() -> None:
    with pytest.raises(TensorError, match="expected bytes-like"):
        StreamValidator().feed("text")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "message", "offset"),
    [
        (b"\x0d\x01\x02\x01\x02", "invalid boolean byte 2", 4),
        (b"\x01\x02\xff" + b"\xff" * 8 + b"\x02", "overflows", 0),
        (b"\x07\x00\x01\x11", "unknown type code 17", 3),
        (b"\x0b\x01\x03\x02", "cannot hold the 3 elements", 3),
    ],
)
def test_bad_stream_fed_whole_fails_at_the_same_byte(
    data: bytes, message: str, offset: int
) -> None:
    """Fed in one chunk, tensors take the fast path: the same refusal at the same byte."""
    with pytest.raises(TensorError, match=message) as caught:
        feed_all(data, len(data))
    assert caught.value.offset == offset


def test_fast_and_byte_paths_agree_on_a_mixed_stream() -> None:
    """Tiny fixed tensors (the fast path), a dimension needing a long varint, booleans,
    strings and media between them: every chunking finds the decoder's tensors."""
    values: list[object] = []
    for i in range(40):
        values.append(np.array(i, dtype=np.uint8))
        values.append(np.arange(i % 5, dtype="<f4").reshape(1, -1))
    values[10:10] = [np.zeros(300, dtype=np.uint8), np.array([True, False]), "text"]
    values.append(Tensor.from_values("image", [Media("png", b"\x89PNG")]))
    data = serialize_many(values)
    expected = [(t.start, t.end) for t in feed_all(data, 1)]  # the byte machine, one byte at a time
    assert len(expected) == len(values)
    for size in (2, 3, 7, 64, len(data)):
        assert [(t.start, t.end) for t in feed_all(data, size)] == expected
    whole = feed_all(data, len(data))
    assert whole[0] == TensorInfo(0, len(serialize(np.array(0, dtype=np.uint8))), "u8", ())
    assert [t.shape for t in whole][:12] == [deserialize_many(data)[i].shape() for i in range(12)]


def test_a_bad_boolean_after_tiny_tensors_reports_how_many_were_complete() -> None:
    good = serialize(np.array(1, dtype=np.uint8)) * 1000
    data = good + b"\x0d\x01\x02\x01\x07"
    validator = StreamValidator()
    with pytest.raises(TensorError, match="invalid boolean byte 7") as caught:
        validator.feed(data)
    assert validator.completed == 1000
    assert caught.value.offset == len(good) + 4


def test_max_tensors_holds_on_the_fast_path() -> None:
    data = serialize(np.array(1, dtype=np.uint8)) * 10
    assert len(feed_all(data, len(data), StreamValidator(max_tensors=10))) == 10
    validator = StreamValidator(max_tensors=9)
    with pytest.raises(TensorError, match="more than 9 tensors") as caught:
        validator.feed(data)
    assert caught.value.offset == 9 * 3
    assert validator.completed == 9


def test_feed_ranges_finds_what_feed_finds_in_every_chunking() -> None:
    values: list[object] = [np.array(i, dtype=np.uint8) for i in range(30)]
    values[5:5] = ["a string", np.zeros(300, dtype="<i2"), np.array([[True], [False]])]
    data = serialize_many(values)
    expected = [(t.start, t.end) for t in feed_all(data, len(data))]
    for size in (1, 2, 5, 64, len(data)):
        validator = StreamValidator()
        starts, ends = array("Q"), array("Q")
        for at in range(0, len(data), size):
            validator.feed_ranges(data[at : at + size], starts, ends)
        validator.finish()
        assert list(zip(starts, ends, strict=True)) == expected


def test_feed_ranges_keeps_the_tensors_before_a_failing_byte() -> None:
    good = serialize_many([1, "x", np.array(2, dtype=np.uint8)])
    starts, ends = array("Q"), array("Q")
    validator = StreamValidator()
    with pytest.raises(TensorError, match="unknown type code 99"):
        validator.feed_ranges(good + b"\x63", starts, ends)
    assert len(starts) == len(ends) == 3 == validator.completed
    assert ends[-1] == len(good)
