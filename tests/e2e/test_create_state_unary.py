"""CreateStateUnary, the one-message form of createState the client uses for small requests:
the same checks and answers as the streamed form, the same job and stored state, and a bad
request refused with nothing kept while the launcher keeps serving."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from launcher.client import LauncherClient
from launcher.client.model import UNARY_MAX_BYTES
from launcher.v1 import model_pb2, model_pb2_grpc
from runtime.tensor import serialize
from tests.support.launcher_proc import LauncherProcess
from tests.support.raw_requests import GOOD, call, header, inline, req_chunk, req_header
from tests.support.specs import TEMPORARY


def unary(
    launcher: LauncherProcess,
    h: model_pb2.CreateStateHeader,
    chunks: list[model_pb2.ParamChunk] | None = None,
) -> model_pb2.CreateStateResponse:
    with grpc.insecure_channel(launcher.address) as channel:
        stub = model_pb2_grpc.ModelStub(channel)
        request = model_pb2.CreateStateUnaryRequest(header=h, chunks=chunks or [])
        response: model_pb2.CreateStateResponse = stub.CreateStateUnary(request, timeout=60)
    return response


def chunk(index: int, data: bytes) -> model_pb2.ParamChunk:
    return model_pb2.ParamChunk(param_index=index, data=data)


BAD: list[tuple[str, model_pb2.CreateStateHeader, list[model_pb2.ParamChunk]]] = [
    ("bad model id", header(model_id="../etc"), []),
    ("empty name", header(name=""), []),
    ("duplicate param names", header(params=[inline("a", GOOD), inline("a", GOOD)]), []),
    ("no execution location", header(execution_location=None), []),
    ("more bytes than declared", header(params=[inline("a", GOOD)]), [chunk(0, GOOD + GOOD)]),
    ("fewer bytes than declared", header(params=[inline("a", GOOD)]), [chunk(0, GOOD[:3])]),
    ("chunk for the wrong param", header(params=[inline("a", GOOD)]), [chunk(1, GOOD)]),
]


@pytest.mark.parametrize(("case", "h", "chunks"), BAD, ids=[c[0] for c in BAD])
def test_a_bad_request_gets_the_streamed_forms_answer_and_nothing_is_kept(
    launcher: LauncherProcess,
    case: str,
    h: model_pb2.CreateStateHeader,
    chunks: list[model_pb2.ParamChunk],
) -> None:
    response = unary(launcher, h, chunks)
    assert response.WhichOneof("outcome") == "error", (case, response)
    err = response.error
    streamed = call(launcher, [req_header(h), *(req_chunk(c.param_index, c.data) for c in chunks)])
    assert {"code": err.code, "parameterName": err.parameter_name, "reason": err.reason} == (
        streamed
    )
    assert err.code == "invalid_parameter" and err.reason, err
    assert list((launcher.root / "tmp").glob("param-*")) == []


def test_unary_and_streamed_forms_store_the_same_state(
    launcher: LauncherProcess, client: LauncherClient
) -> None:
    params = [{"name": "x", "data": [np.arange(6, dtype=np.float32).reshape(2, 3)]}]
    small = client.model.create_state(
        model_id="echo", name="u", params=params, execution_location=TEMPORARY
    )
    events = list(
        client.model.create_state_stream(
            model_id="echo", name="s", params=params, execution_location=TEMPORARY
        )
    )
    streamed = events[-1]
    assert [e["event"] for e in events[:-1]].count("phaseFinished") >= 2  # events still stream
    for answer in (small, streamed):
        success = answer["result"]["success"]
        assert set(success) == {"stateId", "durations"}
        assert {"total", "createLauncher", "codeStartup", "createState"} <= set(
            success["durations"]
        )
    states = [
        client.model.get_model_state(model_id="echo", state_id=a["result"]["success"]["stateId"])[
            "result"
        ]
        for a in (small, streamed)
    ]
    assert [{k["key"]: k["data"] for k in s["data"]} for s in states] == [
        {"x": serialize(np.arange(6, dtype=np.float32).reshape(2, 3)), "ok": b"yes"}
    ] * 2


def test_a_request_over_the_unary_size_streams_and_is_answered_alike(
    client: LauncherClient,
) -> None:
    big = np.zeros(UNARY_MAX_BYTES // 4 + 16, dtype=np.float32)  # just over: streamed
    answer = client.model.create_state(
        model_id="echo",
        name="big",
        params=[{"name": "x", "data": [big]}],
        execution_location=TEMPORARY,
    )
    assert "success" in answer["result"], answer


def test_the_launcher_keeps_serving_after_bad_unary_requests(
    launcher: LauncherProcess, client: LauncherClient
) -> None:
    for _, h, chunks in BAD:
        unary(launcher, h, chunks)
    answer = client.model.create_state(
        model_id="echo", name="after", params=[], execution_location=TEMPORARY
    )
    assert "success" in answer["result"], answer


def test_a_one_message_jobs_record_is_written_with_its_result(
    launcher: LauncherProcess, client: LauncherClient
) -> None:
    """Without keys the one-message call's accepted rows are written with its result (in its
    state's commit): the job's record answers for it afterwards, also after a failed job."""
    bad = client.model.create_state(
        model_id="raise_create", name="u", params=[], execution_location=TEMPORARY
    )
    assert "failed" in bad["result"], bad
    params = [{"name": "x", "data": [np.arange(3, dtype=np.float32)]}]
    ok = client.model.create_state(
        model_id="echo", name="u", params=params, execution_location=TEMPORARY
    )
    state_id = ok["result"]["success"]["stateId"]
    again = client.model.wait_for_state_to_be_created(model_id="echo", state_id=state_id)
    assert again == ok
