"""The platform HTTP API byte by byte (PLATFORM-HTTP.md), with a raw client: varint bounds,
non-minimal varints, malformed bodies, unknown methods, verbs, the JSON cap, the exact
Content-Type, early refusals read to their end, API keys, and client disconnects."""

from __future__ import annotations

import json
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from decthings_api import DecthingsClientSync

from launcher.auth.keys import KeyStore
from launcher.client import LauncherClient
from launcher.store.db import Database
from tests.support.platform_http import (
    TEMPORARY,
    Raw,
    frame,
    http_launcher,
    parse_response,
    varint,
)


@pytest.fixture(scope="module")
def raw() -> Iterator[Raw]:
    with tempfile.TemporaryDirectory(prefix="lh-") as root:
        with http_launcher(Path(root)) as (_proc, base):
            yield Raw(base)


def padded_json(params: dict, length: int) -> bytes:
    """``params`` as JSON of exactly ``length`` bytes (spaces before the closing brace)."""
    body = json.dumps(params).encode()
    assert len(body) <= length
    return body[:-1] + b" " * (length - len(body)) + b"}"


@pytest.mark.parametrize("length", [0, 252, 253, 65_535, 65_536, 65_537, 200_000])
def test_blob_lengths_at_the_varint_bounds_round_trip(raw: Raw, length: int) -> None:
    data = bytes(range(256)) * (length // 256) + bytes(length % 256)
    params = {"modelId": "counter", "name": f"len-{length}", "stateKeyNames": ["k"]}
    result, _ = raw.call("Model", "uploadState", params, [data])
    state_id = result["result"]["stateId"]
    status, _, body = raw.request(
        "POST",
        "/v0/Model/getModelState",
        frame({"modelId": "counter", "stateId": state_id}),
    )
    assert status == 200
    # The answer's varint is the shortest form for that length.
    answer, blobs = parse_response(body)
    assert answer == {"result": {"stateKeyNames": ["k"]}}
    assert blobs == [data]
    assert varint(length) in body


@pytest.mark.parametrize("length", [252, 253, 65_535, 65_537])
def test_json_parts_at_the_varint_bounds_are_read(raw: Raw, length: int) -> None:
    body = padded_json({"modelId": "hello"}, length)
    status, _, data = raw.request("POST", "/v0/Model/getCreatingStates", frame(None, raw_json=body))
    assert status == 200
    assert parse_response(data)[0] == {"result": {"states": []}}


def test_non_minimal_varints_are_accepted(raw: Raw) -> None:
    body = json.dumps({"modelId": "hello"}).encode()
    for prefix in (b"\xfd" + len(body).to_bytes(2, "big"), b"\xff" + len(body).to_bytes(8, "big")):
        status, _, data = raw.request(
            "POST", "/v0/Model/getCreatingStates", b"\x00" + prefix + body
        )
        assert status == 200 and parse_response(data)[0] == {"result": {"states": []}}


def test_answers_are_octet_stream_exactly_and_uncompressed(raw: Raw) -> None:
    status, headers, _ = raw.request(
        "POST",
        "/v0/Model/getModels",
        frame({}),
        {"Accept-Encoding": "gzip, deflate"},
    )
    assert status == 200
    assert headers["Content-Type"] == "application/octet-stream"
    assert "Content-Encoding" not in headers


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"", "empty"),
        (b"\x00", "no JSON length"),
        (frame({"modelId": "hello"})[:-3], "truncated JSON"),
        (frame({"modelId": "hello"}) + b"extra", "trailing bytes"),
        (frame({"modelId": "x", "name": "n", "stateKeyNames": ["k"]}, [b"abc"])[:-1], "short blob"),
        (frame(None, raw_json=b"[1, 2]"), "JSON not an object"),
        (frame(None, raw_json=b"{nope"), "not JSON"),
        (frame(None, raw_json=b'{"a": "\xff"}'), "not UTF-8"),
        (frame(None, raw_json=b'{"a": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"), "too deep"),
    ],
)
def test_a_body_that_is_not_a_frame_is_400(raw: Raw, body: bytes, why: str) -> None:
    status, _, _ = raw.request("POST", "/v0/Model/uploadState", body)
    assert status == 400, why
    assert raw.call("Model", "getCreatingStates", {"modelId": "hello"})[0]["result"] == {
        "states": []
    }


def test_unknown_methods_are_404_and_other_verbs_405(raw: Raw) -> None:
    assert raw.request("POST", "/v0/Model/train", frame({}))[0] == 404
    assert raw.request("POST", "/v0/Nope/getModels", frame({}))[0] == 404
    assert raw.request("POST", "/v1/Model/getModels", frame({}))[0] == 404
    assert raw.request("GET", "/v0/Model/getModels")[0] == 405
    assert raw.request("PUT", "/v0/Model/getModels", frame({}))[0] == 405


def test_a_json_part_over_the_cap_is_413(raw: Raw) -> None:
    body = b"\x00" + varint(1 << 30) + b"{}"
    assert raw.request("POST", "/v0/Model/getModels", body)[0] == 413


def test_health_is_open(raw: Raw) -> None:
    status, _, body = raw.request("GET", "/healthz")
    assert status == 200 and body == b"ok\n"


def test_an_api_error_is_http_200_and_in_band(raw: Raw) -> None:
    answer, blobs = raw.call("Model", "getModelState", {"modelId": "no-such-model"})
    assert answer == {"error": {"code": "model_not_found"}} and blobs == []
    answer, _ = raw.call("Model", "getModels", {"limit": "ten"})
    assert answer["error"]["code"] == "invalid_parameter"
    assert answer["error"]["parameterName"] == "limit"


def test_inline_params_must_match_the_blobs(raw: Raw) -> None:
    params = {
        "modelId": "echo",
        "name": "n",
        "params": [{"name": "x"}],
        "executionLocation": TEMPORARY,
    }
    answer, _ = raw.call("Model", "createState", params, [])
    assert answer["error"]["code"] == "invalid_parameter"
    answer, _ = raw.call("Model", "createState", params, [b"\x01\x00\x00\x00\x80", b""])
    assert answer["error"]["code"] == "invalid_parameter"
    answer, _ = raw.call("Model", "createState", params, [b"\x63garbage"])
    assert answer["error"]["code"] == "invalid_parameter"
    assert answer["error"]["parameterName"].startswith("params[0].data")


def test_a_big_request_refused_early_is_read_before_the_answer(raw: Raw) -> None:
    params = {"modelId": "no-such-model", "name": "n", "params": [{"name": "x"}]}
    params["executionLocation"] = TEMPORARY
    big = b"\x00" * (64 << 20)
    answer, _ = raw.call("Model", "createState", params, [big])
    assert answer == {"error": {"code": "model_not_found"}}


def test_a_client_that_disconnects_does_not_cancel_its_job(raw: Raw) -> None:
    params = {"modelId": "sleeper", "name": "gone", "params": [], "executionLocation": TEMPORARY}
    body = frame(params)
    with socket.create_connection((raw.host, raw.port)) as sock:
        head = (
            f"POST /v0/Model/createState HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        states: list = []
        for _ in range(600):
            states = raw.call("Model", "getCreatingStates", {"modelId": "sleeper"})[0]["result"][
                "states"
            ]
            if any(s["name"] == "gone" for s in states):
                break
            time.sleep(0.05)
    (state,) = [s for s in states if s["name"] == "gone"]
    time.sleep(1)
    still = raw.call("Model", "getCreatingStates", {"modelId": "sleeper"})[0]["result"]["states"]
    assert state["id"] in [s["id"] for s in still]
    ref = {"modelId": "sleeper", "stateId": state["id"]}
    assert raw.call("Model", "cancelCreateState", ref)[0] == {"result": {}}
    answer, _ = raw.call("Model", "waitForStateToBeCreated", ref)
    assert answer["result"]["failed"]["error"]["code"] == "cancelled"


@pytest.fixture(scope="module")
def secured() -> Iterator[tuple[str, str]]:
    with tempfile.TemporaryDirectory(prefix="lk-") as root:
        store = KeyStore(Database(Path(root) / "launcher.db"))
        _key, secret = store.create("only-hello", models=frozenset({"hello"}))
        _key, slow = store.create("slow", rate_per_second=1)
        _key, tiny = store.create("tiny", max_stored_bytes=10)
        limits = ["--max-concurrent-jobs", "1", "--max-queued-jobs", "0"]
        with http_launcher(Path(root), limits) as (_proc, base):
            yield base, secret, slow, tiny


def test_api_keys_apply_to_http_as_to_grpc(secured: tuple[str, str, str, str]) -> None:
    base, secret, _slow, _tiny = secured
    create = {"modelId": "hello", "name": "n", "params": [], "executionLocation": TEMPORARY}
    assert Raw(base).call("Model", "createState", create)[0] == {
        "error": {"code": "bad_credentials"}
    }
    assert Raw(base, "wrong").call("Dataset", "getDatasets", {})[0] == {
        "error": {"code": "bad_credentials"}
    }
    good = Raw(base, secret)
    answer, _ = good.call("Model", "createState", create)
    assert "success" in answer.get("result", {}), answer
    denied = dict(create, modelId="linear")
    assert good.call("Model", "createState", denied)[0]["error"]["code"] == "access_denied"
    assert Raw(base).request("GET", "/healthz")[0] == 200


def test_the_platform_client_with_a_wrong_key_gets_bad_credentials(
    secured: tuple[str, str, str, str],
) -> None:
    base, _secret, _slow, _tiny = secured
    client = DecthingsClientSync(api_key="wrong", http_server_address=base)
    assert client.model.get_models({}) == (None, {"code": "bad_credentials"})


def test_the_rate_limit_of_a_key_applies_over_http(secured: tuple[str, str, str, str]) -> None:
    base, _secret, slow, _tiny = secured
    client = Raw(base, slow)
    codes = [
        client.call("Dataset", "getDatasets", {})[0].get("error", {}).get("code") for _ in range(20)
    ]
    assert "too_many_requests" in codes and None in codes


def test_client_bugs_are_refused_in_band(raw: Raw) -> None:
    # TypeScript writes string element lengths in UTF-16 units: "hé" as 2, not 3 bytes.
    ts_string = bytes.fromhex("0b 01 01 04 02 68 c3 a9")
    params = {"modelId": "echo", "name": "ts", "params": [{"name": "s"}]}
    params["executionLocation"] = TEMPORARY
    answer, _ = raw.call("Model", "createState", params, [ts_string])
    assert answer["error"]["code"] == "invalid_parameter"
    assert answer["error"]["parameterName"].startswith("params[0].data")
    # Rust 0.1.5 leaves stateKeyNames out of uploadState.
    answer, _ = raw.call("Model", "uploadState", {"modelId": "counter", "name": "r"}, [b"x"])
    assert answer["error"]["code"] == "invalid_parameter"
    assert answer["error"]["parameterName"] == "stateKeyNames"


def test_quotas_and_the_job_limit_apply_over_http(secured: tuple[str, str, str, str]) -> None:
    base, _secret, _slow, tiny = secured
    client = Raw(base, tiny)
    params = {"modelId": "counter", "name": "big", "stateKeyNames": ["k"]}
    answer, _ = client.call("Model", "uploadState", params, [b"x" * 100])
    assert answer == {"error": {"code": "quota_exceeded"}}
    sleeper = {"modelId": "sleeper", "name": "busy", "params": [], "executionLocation": TEMPORARY}
    answers: list = []
    thread = threading.Thread(
        target=lambda: answers.append(client.call("Model", "createState", sleeper))
    )
    thread.start()
    try:
        for _ in range(600):
            states = client.call("Model", "getCreatingStates", {"modelId": "sleeper"})[0]
            if states["result"]["states"]:
                break
            time.sleep(0.05)
        (running,) = states["result"]["states"]
        hello = dict(sleeper, modelId="hello")
        answer, _ = client.call("Model", "createState", hello)
        assert answer["result"]["failed"]["error"]["code"] == "server_overloaded"
        ref = {"modelId": "sleeper", "stateId": running["id"]}
        assert client.call("Model", "cancelCreateState", ref)[0] == {"result": {}}
    finally:
        thread.join(120)
    assert answers[0][0]["result"]["failed"]["error"]["code"] == "cancelled"


def test_stalled_and_half_sent_requests_do_not_block_other_clients(raw: Raw) -> None:
    params = {"modelId": "counter", "name": "stall", "stateKeyNames": ["k"]}
    body = frame(params, [b"x" * 1_000_000])
    stalled = []
    try:
        for cut in (0, 3, len(body) // 2):
            sock = socket.create_connection((raw.host, raw.port))
            head = (
                "POST /v0/Model/uploadState HTTP/1.1\r\nHost: x\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            sock.sendall(head.encode() + body[:cut])
            stalled.append(sock)
        half_header = socket.create_connection((raw.host, raw.port))
        half_header.sendall(b"POST /v0/Model/getModels HTTP/1.1\r\nHost: x\r\nContent-Le")
        stalled.append(half_header)
        for _ in range(5):
            answer, _ = raw.call("Model", "getCreatingStates", {"modelId": "hello"})
            assert answer == {"result": {"states": []}}
    finally:
        for sock in stalled:
            sock.close()
    # The half-sent uploads left no state behind.
    models, _ = raw.call("Model", "getModels", {"filter": {"ids": ["counter"]}})
    names = [s["name"] for s in models["result"]["models"][0]["states"]]
    assert "stall" not in names


def test_a_body_that_stalls_is_ended_after_the_intake_idle_time() -> None:
    with tempfile.TemporaryDirectory(prefix="li-") as root:
        with http_launcher(Path(root), ["--intake-idle-seconds", "1"]) as (_proc, base):
            raw = Raw(base)
            body = frame({"modelId": "counter", "name": "s", "stateKeyNames": ["k"]}, [b"x" * 100])
            with socket.create_connection((raw.host, raw.port), timeout=30) as sock:
                head = (
                    "POST /v0/Model/uploadState HTTP/1.1\r\nHost: x\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                )
                sock.sendall(head.encode() + body[:-10])
                answer = sock.recv(4096)  # the answer comes without the rest of the body
            assert answer.startswith(b"HTTP/1.1 400")
            assert raw.call("Model", "getCreatingStates", {"modelId": "hello"})[0] == {
                "result": {"states": []}
            }


def test_a_client_that_does_not_read_its_download_does_not_block_others(raw: Raw) -> None:
    big = b"\x5a" * (48 << 20)
    params = {"modelId": "counter", "name": "unread", "stateKeyNames": ["k"]}
    state_id = raw.call("Model", "uploadState", params, [big])[0]["result"]["stateId"]
    request = frame({"modelId": "counter", "stateId": state_id})
    sockets = []
    try:
        for _ in range(3):
            sock = socket.create_connection((raw.host, raw.port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            head = (
                "POST /v0/Model/getModelState HTTP/1.1\r\nHost: x\r\n"
                f"Content-Length: {len(request)}\r\n\r\n"
            )
            sock.sendall(head.encode() + request)
            sockets.append(sock)
        time.sleep(0.5)
        for _ in range(5):
            answer, _ = raw.call("Model", "getCreatingStates", {"modelId": "hello"})
            assert answer == {"result": {"states": []}}
        status, _, body = raw.request("POST", "/v0/Model/getModelState", request)
        assert status == 200 and parse_response(body)[1] == [big]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture(scope="module")
def tenants() -> Iterator[tuple[str, str, str]]:
    with tempfile.TemporaryDirectory(prefix="lt-") as root:
        store = KeyStore(Database(Path(root) / "launcher.db"))
        _key, one = store.create("one", tenant="t1")
        _key, two = store.create("two", tenant="t2")
        with http_launcher(Path(root)) as (_proc, base):
            yield base, one, two


def test_tenants_see_only_their_own_over_http(tenants: tuple[str, str, str]) -> None:
    base, one, two = tenants
    first, second = Raw(base, one), Raw(base, two)
    keys = [{"name": "x", "required": True, "rules": {}}]
    created, _ = first.call(
        "Dataset", "createDataset", {"name": "d", "description": "", "keys": keys}
    )
    dataset_id = created["result"]["datasetId"]
    listed, _ = second.call("Dataset", "getDatasets", {})
    assert dataset_id not in [d["id"] for d in listed["result"]["datasets"]]
    answer, _ = second.call("Dataset", "getEntries", {"datasetId": dataset_id, "entries": [0]})
    assert answer == {"error": {"code": "access_denied"}}
    param = {"type": "dataset", "datasetId": dataset_id, "datasetKey": "x"}
    request = {"modelId": "echo", "name": "n", "params": [{"name": "x", "data": param}]}
    request["executionLocation"] = TEMPORARY
    answer, _ = second.call("Model", "createState", request)
    assert answer == {"error": {"code": "access_denied"}}
    listed, _ = first.call("Dataset", "getDatasets", {})
    assert dataset_id in [d["id"] for d in listed["result"]["datasets"]]


def test_calls_past_the_concurrent_call_limit_are_too_many_requests() -> None:
    with tempfile.TemporaryDirectory(prefix="lr-") as root:
        with (
            http_launcher(Path(root), ["--max-concurrent-rpcs", "1"]) as (proc, base),
            LauncherClient(proc.address) as grpc_client,
        ):
            raw = Raw(base)
            sleeper = {"modelId": "sleeper", "name": "hold", "params": []}
            sleeper["executionLocation"] = TEMPORARY
            held: list = []
            holder = threading.Thread(
                target=lambda: held.append(raw.call("Model", "createState", sleeper))
            )
            holder.start()
            try:
                states: list = []
                for _ in range(600):  # watched over gRPC, so as not to race the held call
                    states = grpc_client.model.get_creating_states(model_id="sleeper")["result"][
                        "states"
                    ]
                    if states:
                        break
                    time.sleep(0.05)
                answer, _ = raw.call("Model", "getCreatingStates", {"modelId": "sleeper"})
                assert answer == {"error": {"code": "too_many_requests"}}
                grpc_client.model.cancel_create_state(model_id="sleeper", state_id=states[0]["id"])
            finally:
                holder.join(120)
            assert held[0][0]["result"]["failed"]["error"]["code"] == "cancelled"
            answer, _ = raw.call("Model", "getCreatingStates", {"modelId": "sleeper"})
            assert answer == {"result": {"states": []}}
