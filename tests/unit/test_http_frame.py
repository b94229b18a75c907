"""The platform HTTP framing alone: varints at their bounds, the spec's 171-byte example
request parsed, non-minimal forms read, wrong sizes refused, the response head."""

from __future__ import annotations

import asyncio
import json

import pytest

from launcher.http.frame import FrameError, RequestFrame, encode_varint, response_head
from tests.support.platform_http import BytesSource


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (252, b"\xfc"),
        (253, b"\xfd\x00\xfd"),
        (65_535, b"\xfd\xff\xff"),
        (65_536, b"\xfe\x00\x01\x00\x00"),
        (2**32 - 1, b"\xfe\xff\xff\xff\xff"),
        (2**32, b"\xff\x00\x00\x00\x01\x00\x00\x00\x00"),
    ],
)
def test_varints_are_written_in_their_shortest_form(value: int, encoded: bytes) -> None:
    assert encode_varint(value) == encoded


def _parse(data: bytes, declared: int | None) -> RequestFrame:
    async def run() -> RequestFrame:
        parsed = RequestFrame(BytesSource(data), declared)
        await parsed.open(max_json=1 << 20)
        return parsed

    return asyncio.run(run())


SPEC_JSON = (
    b'{"modelId": "m1", "name": "init", "params": [{"name": "x"}], "executionLocation": '
    b'{"type": "temporaryLauncher", "spec": {"cpus": 1, "memoryMebibytes": 512}}}'
)
SPEC_BLOB = bytes.fromhex("010102") + bytes.fromhex("0000803f") + bytes.fromhex("00002040")


def test_the_specs_example_request_is_parsed() -> None:
    data = b"\x01\x9d\x0b" + SPEC_JSON + SPEC_BLOB
    assert len(data) == 171
    parsed = _parse(data, 171)
    assert parsed.params == json.loads(SPEC_JSON)
    assert parsed.blob_lengths == [11]

    async def blob() -> bytes:
        return await parsed.read_blob(0)

    assert asyncio.run(blob()) == SPEC_BLOB


def test_a_non_minimal_json_length_is_read() -> None:
    body = b'{"a": 1}'
    parsed = _parse(b"\x00\xfe" + len(body).to_bytes(4, "big") + body, None)
    assert parsed.params == {"a": 1}


@pytest.mark.parametrize("declared", [170, 172])
def test_a_content_length_that_disagrees_with_the_header_is_400(declared: int) -> None:
    with pytest.raises(FrameError) as err:
        _parse(b"\x01\x9d\x0b" + SPEC_JSON + SPEC_BLOB, declared)
    assert err.value.status == 400


def test_a_json_part_over_the_cap_is_413() -> None:
    with pytest.raises(FrameError) as err:
        _parse(b"\x00\xfe\x10\x00\x00\x00{}", None)
    assert err.value.status == 413


def test_the_response_head_is_a_varint_and_compact_json() -> None:
    body = {"result": {"success": {"durations": {"total": 1834, "createState": 519}}}}
    head = response_head(body)
    raw = json.dumps(body, separators=(",", ":")).encode()
    assert head == encode_varint(len(raw)) + raw
