"""Intake off the loop, bounded (issue 12 items 4, 5, 9): a param of 10^6 tensors does not
stall other clients, caps on tensors and bytes, idle streams ended without holding
descriptors, caps on concurrent intakes and calls, duplicate mounts, dataset params checked
against the model's parameter definitions. Each refusal leaves other clients served."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import psutil
import pytest

from launcher.client import LauncherClient
from launcher.v1 import model_pb2, model_pb2_grpc
from runtime.tensor import serialize
from tests.support.bounds import (
    CHEAP_CALL_BOUND,
    LatencyProbe,
    cheap_call_seconds,
    create,
    error_of,
)
from tests.support.launcher_proc import LauncherProcess, running_launcher
from tests.support.raw_requests import GOOD_SPEC, header, req_chunk, req_header
from tests.support.tenants import launcher_with_keys

#: One u8 scalar tensor: type code, zero dimensions, one byte.
ONE_BYTE_TENSOR = serialize(np.array(7, dtype=np.uint8))


@pytest.fixture(scope="module")
def served() -> Iterator[LauncherProcess]:
    with tempfile.TemporaryDirectory(prefix="li-") as root:
        args = ["--max-tensors-per-param", "2000000", "--max-request-bytes", str(64 << 20)]
        with running_launcher(Path(root), args) as proc:
            yield proc


def _stream(
    address: str, messages: Iterator[model_pb2.CreateStateRequest], timeout: float = 120
) -> model_pb2.CreateStateResponse:
    """The final response of a raw CreateState stream."""
    with grpc.insecure_channel(address) as channel:
        stub = model_pb2_grpc.ModelStub(channel)
        events = list(stub.CreateState(messages, timeout=timeout))
    return events[-1].response


def _error(response: model_pb2.CreateStateResponse) -> dict[str, str]:
    assert response.WhichOneof("outcome") == "error", response
    e = response.error
    return {"code": e.code, "parameterName": e.parameter_name, "reason": e.reason}


def _inline_header(sizes: list[int], model_id: str = "hello") -> model_pb2.CreateStateRequest:
    params = [
        model_pb2.Param(name=f"p{i}", inline=model_pb2.InlineParam(byte_size=size))
        for i, size in enumerate(sizes)
    ]
    return req_header(header(model_id=model_id, params=params))


def _chunks(data: bytes, size: int = 1 << 20) -> Iterator[model_pb2.CreateStateRequest]:
    for at in range(0, len(data), size):
        yield req_chunk(0, data[at : at + size])


def test_a_million_tensor_param_does_not_stall_other_clients(served: LauncherProcess) -> None:
    data = ONE_BYTE_TENSOR * 1_000_000
    assert len(data) == 3_000_000
    process = psutil.Process(served.pid)
    before = process.memory_info().rss

    def messages() -> Iterator[model_pb2.CreateStateRequest]:
        yield _inline_header([len(data)])
        yield from _chunks(data)

    with LatencyProbe(served.address) as probe:
        response = _stream(served.address, messages())
    grown = process.memory_info().rss - before
    assert response.WhichOneof("outcome") == "result", response
    assert response.result.WhichOneof("outcome") == "success", response
    assert not probe.errors, probe.errors
    assert probe.samples and probe.worst < CHEAP_CALL_BOUND, sorted(probe.samples)[-5:]
    # 16 bytes a tensor (two uint64 columns), not an object each: far below 192 MiB.
    assert grown < 100 << 20, grown


def _hello_states(address: str) -> list[str]:
    with LauncherClient(address) as client:
        (model,) = client.model.get_models(filter={"ids": ["hello"]})["result"]["models"]
    return sorted(s["id"] for s in model["states"])


def test_too_many_tensors_in_a_param_are_refused() -> None:
    with tempfile.TemporaryDirectory(prefix="li-") as root:
        with running_launcher(Path(root), ["--max-tensors-per-param", "1000"]) as proc:
            data = ONE_BYTE_TENSOR * 1001

            def messages() -> Iterator[model_pb2.CreateStateRequest]:
                yield _inline_header([len(data)])
                yield from _chunks(data)

            before = _hello_states(proc.address)
            err = _error(_stream(proc.address, messages()))
            assert _hello_states(proc.address) == before  # refused: nothing kept
            spooled = [p for p in (Path(root) / "tmp").iterdir() if p.name.startswith("param-")]
            assert spooled == []  # no spool file left
            assert (err["code"], err["parameterName"]) == (
                "invalid_parameter",
                "params[0].data[1000]",
            )
            assert "more than 1000 tensors" in err["reason"]
            assert cheap_call_seconds(proc.address) < CHEAP_CALL_BOUND
            ok = ONE_BYTE_TENSOR * 1000

            def fitting() -> Iterator[model_pb2.CreateStateRequest]:
                yield _inline_header([len(ok)])
                yield from _chunks(ok)

            assert _stream(proc.address, fitting()).result.WhichOneof("outcome") == "success"


def test_more_inline_bytes_than_the_request_cap_are_refused_from_the_header(
    served: LauncherProcess,
) -> None:
    cap = 64 << 20
    err = _error(_stream(served.address, iter([_inline_header([cap // 2, cap // 2 + 1])])))
    assert (err["code"], err["parameterName"]) == ("invalid_parameter", "params[1].data")
    assert f"limited to {cap} bytes per request" in err["reason"]
    assert cheap_call_seconds(served.address) < CHEAP_CALL_BOUND


def _idle(
    first: list[model_pb2.CreateStateRequest], hold: threading.Event
) -> Iterator[model_pb2.CreateStateRequest]:
    yield from first
    hold.wait(60)  # sends nothing more until released


class _Holders:
    """``n`` request streams that send their first messages and then nothing until released.
    A stream the launcher refused (it raced a probe for a slot) is started again by
    ``ensure``, so a probe sees the cap only once all ``n`` are held."""

    def __init__(self, address: str, n: int, metadata: list[tuple[str, str]] | None = None):
        self.address = address
        self.metadata = metadata or []
        self.hold = threading.Event()
        self.answers: list[model_pb2.CreateStateResponse | Exception] = []
        self.threads = [self._start() for _ in range(n)]

    def _run(self) -> None:
        try:
            with grpc.insecure_channel(self.address) as channel:
                stub = model_pb2_grpc.ModelStub(channel)
                messages = _idle([_inline_header([10])], self.hold)
                events = list(stub.CreateState(messages, timeout=120, metadata=self.metadata))
            self.answers.append(events[-1].response)
        except grpc.RpcError as e:
            self.answers.append(e)

    def _start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        return thread

    def ensure(self) -> None:
        """Every stream alive (restarting refused ones), settled for a moment."""
        for _ in range(20):
            if all(t.is_alive() for t in self.threads):
                time.sleep(0.5)
                if all(t.is_alive() for t in self.threads):
                    return
            self.threads = [t if t.is_alive() else self._start() for t in self.threads]
            time.sleep(0.3)
        raise AssertionError(f"the streams could not all be held: {self.answers}")

    def release(self) -> list[model_pb2.CreateStateResponse | Exception]:
        self.hold.set()
        for t in self.threads:
            t.join(60)
        return self.answers


def test_idle_streams_are_ended_and_hold_no_descriptors() -> None:
    with tempfile.TemporaryDirectory(prefix="li-") as root:
        with running_launcher(Path(root), ["--intake-idle-seconds", "3"]) as proc:
            process = psutil.Process(proc.pid)
            baseline = process.num_fds()
            hold = threading.Event()
            answers: list[dict[str, str]] = []
            started = time.monotonic()

            def one(first: list[model_pb2.CreateStateRequest]) -> None:
                answers.append(_error(_stream(proc.address, _idle(first, hold))))

            headers = [[_inline_header([10] * 256)] for _ in range(4)] + [[]]
            threads = [threading.Thread(target=one, args=(h,)) for h in headers]
            for t in threads:
                t.start()
            time.sleep(1.0)
            # Four streams with a 256-param header each: no spool file is open for any.
            assert process.num_fds() < baseline + 40, (baseline, process.num_fds())
            assert cheap_call_seconds(proc.address) < CHEAP_CALL_BOUND
            for t in threads:
                t.join(60)
            hold.set()
            assert time.monotonic() - started < 30
            assert len(answers) == 5
            for err in answers:
                assert err["code"] == "invalid_parameter", err
                assert "sent nothing for 3 s" in err["reason"], err
            with LauncherClient(proc.address) as client:
                assert "success" in create(client, "hello")["result"]


def test_concurrent_intakes_past_the_cap_are_refused_then_served_again() -> None:
    with tempfile.TemporaryDirectory(prefix="li-") as root:
        args = ["--max-concurrent-intakes", "2", "--intake-idle-seconds", "30"]
        with running_launcher(Path(root), args) as proc:
            holders = _Holders(proc.address, 2)
            refused = None
            for _ in range(20):
                holders.ensure()
                with LauncherClient(proc.address) as client:
                    res = create(client, "hello")
                if "error" in res:
                    refused = res
                    break
            assert refused is not None and error_of(refused)["code"] == "too_many_requests"
            assert cheap_call_seconds(proc.address) < CHEAP_CALL_BOUND  # other calls still go
            answers = holders.release()
            # The held streams end short of their declared bytes: refused, nothing kept.
            last = [a for a in answers if isinstance(a, model_pb2.CreateStateResponse)][-2:]
            assert [_error(a)["code"] for a in last] == ["invalid_parameter"] * 2
            with LauncherClient(proc.address) as client:
                assert "success" in create(client, "hello")["result"]


def test_calls_past_maximum_concurrent_rpcs_are_refused() -> None:
    with tempfile.TemporaryDirectory(prefix="li-") as root:
        args = ["--max-concurrent-rpcs", "3", "--intake-idle-seconds", "30"]
        with running_launcher(Path(root), args) as proc:
            holders = _Holders(proc.address, 3)
            code = None
            for _ in range(20):
                holders.ensure()
                with LauncherClient(proc.address) as client:
                    res = client.model.get_models()
                if "error" in res:
                    code = res["error"]["code"]
                    break
            holders.release()
            assert code == "too_many_requests"
            assert cheap_call_seconds(proc.address) < CHEAP_CALL_BOUND


def test_duplicate_mounts_are_refused(served: LauncherProcess) -> None:
    with LauncherClient(served.address) as client:
        res = create(client, "mount_probe", mount_models=[{"modelId": "echo"}, {"modelId": "echo"}])
    err = error_of(res)
    assert (err["code"], err["parameterName"]) == ("invalid_parameter", "mountModels[1].modelId")
    assert "mounted twice" in err["reason"]


def test_dataset_param_is_checked_against_the_models_definitions(
    served: LauncherProcess,
) -> None:
    with LauncherClient(served.address) as client:
        made = client.dataset.create_dataset(name="ints", description="", keys=[{"name": "v"}])
        dataset_id = made["result"]["datasetId"]
        added = client.dataset.add_entries(
            dataset_id, keys=[{"key": "v", "data": [np.array(1, np.int32)] * 3}]
        )
        assert "result" in added, added
        param = {
            "name": "x",
            "data": {"type": "dataset", "datasetId": dataset_id, "datasetKey": "v"},
        }
        err = error_of(create(client, "typed", params=[param]))
        assert (err["code"], err["parameterName"]) == ("invalid_parameter", "params[0].data[0]")
        assert "type i32 is not allowed" in err["reason"]
        # Entries that fit the definition (f32, shape [-1, 3]) are accepted.
        good = client.dataset.create_dataset(name="rows", description="", keys=[{"name": "v"}])
        good_id = good["result"]["datasetId"]
        rows = [np.zeros((2, 3), np.float32), np.ones((1, 3), np.float32)]
        assert "result" in client.dataset.add_entries(good_id, keys=[{"key": "v", "data": rows}])
        param["data"]["datasetId"] = good_id  # type: ignore[index]
        res = create(client, "typed", params=[param])
        assert "success" in res["result"], res
        wrong_shape = [np.zeros((2, 4), np.float32)]
        assert "result" in client.dataset.add_entries(
            good_id, keys=[{"key": "v", "data": wrong_shape}]
        )
        err = error_of(create(client, "typed", params=[param]))
        assert err["parameterName"] == "params[0].data[2]"
        assert "does not match the shape rule [-1, 3]" in err["reason"]


def test_header_without_data_is_still_refused_when_the_spec_is_bad(served: LauncherProcess) -> None:
    bad = model_pb2.ExecutionLocation(
        temporary_launcher_spec=type(GOOD_SPEC)(cpus=0, memory_mebibytes=512)
    )
    err = _error(_stream(served.address, iter([req_header(header(execution_location=bad))])))
    assert err["code"] == "invalid_parameter"
    assert cheap_call_seconds(served.address) < CHEAP_CALL_BOUND


def test_one_tenant_past_its_intake_cap_does_not_block_another() -> None:
    specs = {"alice": {"tenant": "a"}, "bob": {"tenant": "b"}}
    args = ["--max-tenant-intakes", "1", "--intake-idle-seconds", "30"]
    with launcher_with_keys(specs, args) as (proc, keys):
        holders = _Holders(proc.address, 1, [("authorization", f"Bearer {keys['alice']}")])
        refused = None
        for _ in range(20):
            holders.ensure()
            with LauncherClient(proc.address, api_key=keys["alice"]) as alice:
                res = create(alice, "hello")
            if "error" in res:
                refused = res
                break
        assert refused is not None and error_of(refused)["code"] == "too_many_requests"
        assert "tenant 'a'" in error_of(refused)["reason"]
        with LauncherClient(proc.address, api_key=keys["bob"]) as bob:
            start = time.monotonic()
            res = create(bob, "hello")
            assert "success" in res["result"], res
            assert time.monotonic() - start < 30
        answers = holders.release()
        assert _error(answers[-1])["code"] == "invalid_parameter"  # short of its declared bytes
        with LauncherClient(proc.address, api_key=keys["alice"]) as alice:
            assert "success" in create(alice, "hello")["result"]
