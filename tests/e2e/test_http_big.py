"""1 GiB through the platform HTTP API each way, the launcher's memory measured: a createState
body streamed in by a raw uploader (the platform's clients build bodies whole, so a test
client that streams is needed to keep the test's own memory small) and a state download
streamed out. The launcher's RSS grows by less than 64 MiB in both."""

from __future__ import annotations

import http.client
import json
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.support.memwatch import peak_rss
from tests.support.platform_http import http_launcher, parse_response, varint

pytestmark = pytest.mark.slow

GIB = 1 << 30
LIMIT_MIB = 64
ELEMENTS = 4 << 20  # f32 elements per tensor: 16 MiB each
TENSORS = GIB // (ELEMENTS * 4)


def _tensor_header() -> bytes:
    return b"\x01\x01" + varint(ELEMENTS)  # f32, one dimension


def _post_streamed(
    host: str, port: int, path: str, head: bytes, pieces: Iterator[bytes], size: int
) -> bytes:
    conn = http.client.HTTPConnection(host, port, timeout=600)
    try:
        conn.putrequest("POST", path)
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(len(head) + size))
        conn.endheaders()
        conn.send(head)
        for piece in pieces:
            conn.send(piece)
        response = conn.getresponse()
        assert response.status == 200
        return response.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[int, str, int]]:
    with tempfile.TemporaryDirectory(prefix="lb-") as root:
        with http_launcher(Path(root)) as (proc, base):
            host, port = base.removeprefix("http://").removesuffix("/v0").rsplit(":", 1)
            yield proc.pid, host, int(port)


def test_a_1_gib_create_state_body_streams_through(served: tuple[int, str, int]) -> None:
    pid, host, port = served
    values = np.ones(ELEMENTS, dtype=np.float32).tobytes()
    tensor = _tensor_header() + values
    blob = len(tensor) * TENSORS
    params = {"modelId": "sum_param", "name": "big", "params": [{"name": "x"}]}
    params["executionLocation"] = {
        "type": "temporaryLauncher",
        "spec": {"cpus": 1, "memoryMebibytes": 1024},
    }
    body = json.dumps(params).encode()
    head = b"\x01" + varint(len(body)) + varint(blob) + body
    with peak_rss(pid) as rss:
        data = _post_streamed(
            host, port, "/v0/Model/createState", head, (tensor for _ in range(TENSORS)), blob
        )
    answer, _ = parse_response(data)
    success = answer["result"]["success"]
    assert rss.growth_mib < LIMIT_MIB, f"launcher RSS grew {rss.growth_mib:.0f} MiB"
    state_id = success["stateId"]
    status_body = json.dumps({"modelId": "sum_param", "stateId": state_id}).encode()
    conn = http.client.HTTPConnection(host, port, timeout=120)
    conn.request(
        "POST", "/v0/Model/getModelState", b"\x00" + varint(len(status_body)) + status_body
    )
    stored, blobs = parse_response(conn.getresponse().read())
    conn.close()
    keys = dict(zip(stored["result"]["stateKeyNames"], blobs, strict=True))
    assert struct.unpack("<d", keys["sum"])[0] == float(ELEMENTS * TENSORS)
    assert struct.unpack("<q", keys["count"])[0] == ELEMENTS * TENSORS
    print(f"createState 1 GiB over HTTP: launcher RSS +{rss.growth_mib:.1f} MiB")


def test_a_1_gib_state_uploads_and_downloads_streamed(served: tuple[int, str, int]) -> None:
    pid, host, port = served
    piece = bytes(range(256)) * (4096 * 4)  # 4 MiB
    count = GIB // len(piece)
    params = json.dumps({"modelId": "counter", "name": "huge", "stateKeyNames": ["w"]}).encode()
    head = b"\x01" + varint(len(params)) + varint(GIB) + params
    with peak_rss(pid) as up:
        data = _post_streamed(
            host, port, "/v0/Model/uploadState", head, (piece for _ in range(count)), GIB
        )
    state_id = parse_response(data)[0]["result"]["stateId"]
    assert up.growth_mib < LIMIT_MIB, f"launcher RSS grew {up.growth_mib:.0f} MiB on upload"
    request = json.dumps({"modelId": "counter", "stateId": state_id}).encode()
    conn = http.client.HTTPConnection(host, port, timeout=600)
    with peak_rss(pid) as down:
        conn.request("POST", "/v0/Model/getModelState", b"\x00" + varint(len(request)) + request)
        response = conn.getresponse()
        assert response.status == 200
        length = int.from_bytes(response.read(1), "big")
        answer = json.loads(response.read(length))
        assert answer == {"result": {"stateKeyNames": ["w"]}}
        assert response.read(1) == b"\xfe"
        assert int.from_bytes(response.read(4), "big") == GIB
        received = 0
        while chunk := response.read(4 << 20):
            assert chunk == piece[: len(chunk)]
            received += len(chunk)
    conn.close()
    assert received == GIB
    assert down.growth_mib < LIMIT_MIB, f"launcher RSS grew {down.growth_mib:.0f} MiB on download"
    print(
        f"1 GiB state over HTTP: launcher RSS +{up.growth_mib:.1f} MiB up, "
        f"+{down.growth_mib:.1f} MiB down"
    )
