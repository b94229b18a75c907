"""Fuzzing the platform HTTP API with random and mutated request frames sent to a real
launcher: every one is answered (200 with exactly one of ``result``/``error``, or 400, 404,
413) and the launcher keeps serving a well-formed call after it. Also the frame parser alone,
over random bytes: only ``FrameError`` comes out, never a read past the body."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from launcher.http.frame import FrameError, RequestFrame
from tests.support.platform_http import BytesSource, Raw, frame, http_launcher, parse_response

pytestmark = pytest.mark.fuzz
# make fuzz (profile "long") runs more; make test runs a bounded number of requests.
FUZZ = settings(
    max_examples=max(150, settings.default.max_examples),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
METHODS = [
    ("Model", "getModels"),
    ("Model", "getCreatingStates"),
    ("Model", "uploadState"),
    ("Model", "getModelState"),
    ("Model", "createState"),
    ("Dataset", "createDataset"),
    ("Dataset", "getEntries"),
    ("PersistentLauncher", "getSysinfo"),
]
SEEDS = [
    frame({"modelId": "counter", "name": "f", "stateKeyNames": ["a", "b"]}, [b"xyz", b""]),
    frame({"modelId": "counter"}),
    frame({"modelId": "nope", "name": "n", "params": [{"name": "x"}]}, [b"\x01\x00\x00\x00\x80?"]),
    frame({"name": "d", "description": "", "keys": [{"name": "k", "required": True}]}),
    frame({"datasetId": "x", "entries": {"start": 0, "end": 3}}),
    frame({"offset": 0, "limit": 5, "filter": {"ids": ["hello"]}}),
]


@pytest.fixture(scope="module")
def raw() -> Iterator[Raw]:
    with tempfile.TemporaryDirectory(prefix="lf-") as root:
        with http_launcher(Path(root)) as (_proc, base):
            yield Raw(base)


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for pos, value in edits:
        if out:
            out[pos % len(out)] = value
    if cut is not None:
        out = out[: cut % (len(out) + 1)]
    return bytes(out)


def _check_answer(status: int, body: bytes) -> None:
    assert status in (200, 400, 404, 413), status
    if status == 200:
        answer, _ = parse_response(body)
        assert list(answer) in (["result"], ["error"]), answer


def _still_serving(raw: Raw) -> None:
    answer, _ = raw.call("Model", "getCreatingStates", {"modelId": "hello"})
    assert answer == {"result": {"states": []}}


@FUZZ
@given(
    method=st.sampled_from(METHODS),
    seed=st.sampled_from(SEEDS),
    edits=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=6),
    cut=st.none() | st.integers(0, 1 << 16),
    extra=st.binary(max_size=16),
)
def test_mutated_frames_are_answered_and_the_launcher_keeps_serving(
    raw: Raw,
    method: tuple[str, str],
    seed: bytes,
    edits: list[tuple[int, int]],
    cut: int | None,
    extra: bytes,
) -> None:
    body = _mutate(seed, edits, cut) + extra
    status, _, data = raw.request("POST", f"/v0/{method[0]}/{method[1]}", body)
    _check_answer(status, data)
    _still_serving(raw)


@FUZZ
@given(method=st.sampled_from(METHODS), body=st.binary(max_size=512))
def test_random_bodies_are_answered(raw: Raw, method: tuple[str, str], body: bytes) -> None:
    status, _, data = raw.request("POST", f"/v0/{method[0]}/{method[1]}", body)
    _check_answer(status, data)
    _still_serving(raw)


@settings(max_examples=max(500, settings.default.max_examples), deadline=None)
@given(data=st.binary(max_size=300), declared=st.none() | st.integers(0, 400))
def test_the_parser_reads_a_frame_or_raises_frame_error(data: bytes, declared: int | None) -> None:
    async def parse() -> None:
        parsed = RequestFrame(BytesSource(data), declared)
        try:
            await parsed.open(max_json=256)
            for index in range(len(parsed.blob_lengths)):
                async for _ in parsed.pieces(index):
                    pass
            await parsed.check_end()
        except FrameError:
            return
        assert isinstance(parsed.params, dict)
        json.dumps(parsed.params)

    asyncio.run(parse())
