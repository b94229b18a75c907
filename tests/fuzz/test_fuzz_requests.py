"""Fuzzing createState with random requests sent to a real launcher: random headers (huge,
empty and unicode strings, NaN/inf numbers, absurd sizes and counts) followed by random or
valid tensor bytes. Every call gets exactly one response (error or result), the last event of
its stream; the launcher stays up, with its memory and open files bounded."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from launcher.v1 import common_pb2, model_pb2, model_pb2_grpc
from runtime.tensor import serialize
from tests.support.launcher_proc import LauncherProcess, running_launcher, wait_serving

pytestmark = pytest.mark.fuzz
EXAMPLES = 150  # make fuzz (profile "long") runs more
RSS_SLACK_MIB = 150
FDS_SLACK = 32

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
STRINGS = st.one_of(
    TEXT,
    st.sampled_from(["", " ", "../etc", "a" * 129, "é" * 100_000, "\x00", "名前", "n"]),
)
MODEL_IDS = st.one_of(st.sampled_from(["hello", "echo", "raise_create", "no_such"]), STRINGS)
U64 = st.one_of(st.integers(0, 1 << 12), st.sampled_from([0, 31, 32, 1 << 40, (1 << 64) - 1]))
FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.1, 1.0, -0.0, 1e308])
)


@st.composite
def tensors(draw: st.DrawFn) -> bytes:
    """Valid serialized tensors (floats with NaN/inf, strings), or random bytes."""
    kind = draw(st.sampled_from(["f64", "i32", "str", "bytes"]))
    if kind == "f64":
        values = draw(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=20))
        return serialize(np.array(values, dtype=np.float64))
    if kind == "i32":
        values = draw(st.lists(st.integers(-(1 << 31), (1 << 31) - 1), max_size=20))
        return serialize(np.array(values, dtype=np.int32))
    if kind == "str":
        return serialize(draw(TEXT))
    return draw(st.binary(max_size=300))


#: The parts of a request that a test case may break; the others are drawn valid, so that
#: broken requests reach each stage (header checks, resolution, tensor bytes, a running job).
WILD = [
    "model_id", "name", "param_name", "param_kind", "byte_size", "tensor_bytes",
    "mounts", "location", "cpus", "memory", "disk", "swap", "gpus", "stray",
]  # fmt: skip


class Fields:
    """Draws each field valid, or wild when the test case chose to break it."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw
        self.wild = draw(st.sets(st.sampled_from(WILD)))

    def __call__(self, field: str, valid: st.SearchStrategy, wild: st.SearchStrategy) -> Any:
        return self.draw(wild if field in self.wild else valid)


def _param(f: Fields, index: int) -> tuple[model_pb2.Param, bytes | None]:
    name = f("param_name", st.just(f"p{index}"), st.one_of(st.just("p0"), STRINGS))
    kind = f("param_kind", st.just("inline"), st.sampled_from(["dataset", "none"]))
    if kind == "dataset":
        dataset = model_pb2.DatasetParam(dataset_id=f.draw(STRINGS), dataset_key=f.draw(STRINGS))
        return model_pb2.Param(name=name, dataset=dataset), None
    if kind == "none":
        return model_pb2.Param(name=name), None
    data = b"".join(
        f("tensor_bytes", st.lists(tensors(), max_size=3), st.lists(st.binary(), max_size=3))
    )
    size = f("byte_size", st.just(len(data)), U64)
    return model_pb2.Param(name=name, inline=model_pb2.InlineParam(byte_size=size)), data


def _location(f: Fields) -> model_pb2.ExecutionLocation | None:
    kind = f("location", st.just("temporary"), st.sampled_from(["persistent", "none"]))
    if kind == "none":
        return None
    if kind == "persistent":
        return model_pb2.ExecutionLocation(persistent_launcher_id=f.draw(STRINGS))
    spec = common_pb2.LauncherSpec(
        cpus=f("cpus", st.just(1.0), FLOATS), memory_mebibytes=f("memory", st.just(512), U64)
    )
    if "disk" in f.wild:
        spec.disk_mebibytes = f.draw(U64)
    if "swap" in f.wild:
        spec.swap_mebibytes = f.draw(U64)
    if "gpus" in f.wild:
        spec.gpus.model = f.draw(STRINGS)
        spec.gpus.count = f.draw(st.integers(0, (1 << 32) - 1))
    return model_pb2.ExecutionLocation(temporary_launcher_spec=spec)


@st.composite
def requests(draw: st.DrawFn) -> list[model_pb2.CreateStateRequest]:
    f = Fields(draw)
    drawn = [_param(f, i) for i in range(draw(st.integers(0, 3)))]
    mounts = [
        model_pb2.MountModel(
            model_id=draw(MODEL_IDS),
            state_id=draw(st.one_of(st.none(), STRINGS)),
            snapshot_id=draw(st.one_of(st.none(), STRINGS)),
        )
        for _ in range(f("mounts", st.just(0), st.integers(1, 20)))
    ]
    header = model_pb2.CreateStateHeader(
        model_id=f("model_id", st.sampled_from(["hello", "echo", "raise_create"]), MODEL_IDS),
        name=f("name", st.just("n"), STRINGS),
        params=[p for p, _ in drawn],
        mount_models=mounts,
        execution_location=_location(f),
    )
    out = [model_pb2.CreateStateRequest(header=header)]
    for index, (_, data) in enumerate(drawn):
        if data is not None:
            chunk = model_pb2.ParamChunk(param_index=index, data=data)
            out.append(model_pb2.CreateStateRequest(chunk=chunk))
    if "stray" in f.wild:  # something out of order: a stray chunk or a second header
        index = draw(st.integers(0, 9))
        stray = draw(
            st.sampled_from(
                [
                    model_pb2.CreateStateRequest(header=header),
                    model_pb2.CreateStateRequest(
                        chunk=model_pb2.ParamChunk(param_index=index, data=b"x")
                    ),
                ]
            )
        )
        out.insert(draw(st.integers(0, len(out))), stray)
    return out


@pytest.fixture(scope="module")
def fuzz_launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LauncherProcess]:
    with running_launcher(Path(tmp_path_factory.mktemp("fq"))) as launcher:
        yield launcher


def _rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / (1 << 20)


def test_random_create_state_requests_get_exactly_one_answer(
    fuzz_launcher: LauncherProcess,
) -> None:
    process = psutil.Process(fuzz_launcher.pid)
    rss_before, fds_before = _rss_mib(fuzz_launcher.pid), process.num_fds()
    answers: Counter[str] = Counter()
    with grpc.insecure_channel(fuzz_launcher.address) as channel:
        stub = model_pb2_grpc.ModelStub(channel)

        @settings(
            max_examples=max(EXAMPLES, settings.default.max_examples),
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(requests())
        def one(messages: list[model_pb2.CreateStateRequest]) -> None:
            events = list(stub.CreateState(iter(messages), timeout=60))
            kinds = [e.WhichOneof("event") for e in events]
            assert kinds.count("response") == 1 and kinds[-1] == "response", kinds
            response = events[-1].response
            outcome = response.WhichOneof("outcome")
            assert outcome in ("error", "result")
            if outcome == "error":
                answers[response.error.code] += 1
            else:
                answers[response.result.WhichOneof("outcome") or "?"] += 1

        one()
    wait_serving(fuzz_launcher.address, timeout=5)
    assert fuzz_launcher.proc is not None and fuzz_launcher.proc.poll() is None
    growth = _rss_mib(fuzz_launcher.pid) - rss_before
    assert growth < RSS_SLACK_MIB, f"the launcher grew by {growth:.0f} MiB"
    assert process.num_fds() - fds_before < FDS_SLACK
    print(f"\ncreateState fuzz: {answers.total()} requests, RSS growth {growth:.1f} MiB")
    print(f"answers: {dict(answers)}")
