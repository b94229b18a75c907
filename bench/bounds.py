"""Another client's cheap call while the launcher is attacked (issue 12): GetModels latency p99
while a 10^6-tensor upload (3 MB of one-byte tensors in one param) and createState calls on a
model whose model.toml is a FIFO are in progress, beside the same p99 on the idle launcher."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import grpc
import numpy as np

from bench.common import Settings, percentile, running_launcher
from bench.report import Figure, Target
from launcher.client import LauncherClient
from launcher.v1 import common_pb2, model_pb2, model_pb2_grpc
from runtime.tensor import serialize

ONE_BYTE_TENSOR = serialize(np.array(7, dtype=np.uint8))
TEMPORARY = {"type": "temporaryLauncher", "spec": {"cpus": 1, "memoryMebibytes": 512}}


def _cheap_calls(client: LauncherClient, stop: threading.Event, limit: int) -> list[float]:
    samples: list[float] = []
    while not stop.is_set() and len(samples) < limit:
        start = time.perf_counter()
        res = client.model.get_models()
        samples.append(time.perf_counter() - start)
        if "result" not in res:
            raise RuntimeError(f"GetModels failed: {res}")
        time.sleep(0.005)
    return samples


def _upload(address: str, tensors: int) -> None:
    data = ONE_BYTE_TENSOR * tensors
    param = model_pb2.Param(name="x", inline=model_pb2.InlineParam(byte_size=len(data)))
    spec = common_pb2.LauncherSpec(cpus=1, memory_mebibytes=512)
    header = model_pb2.CreateStateHeader(
        model_id="hello",
        name="bench-bounds",
        params=[param],
        execution_location=model_pb2.ExecutionLocation(temporary_launcher_spec=spec),
    )

    def messages() -> Iterator[model_pb2.CreateStateRequest]:
        yield model_pb2.CreateStateRequest(header=header)
        for at in range(0, len(data), 1 << 20):
            chunk = model_pb2.ParamChunk(param_index=0, data=data[at : at + (1 << 20)])
            yield model_pb2.CreateStateRequest(chunk=chunk)

    with grpc.insecure_channel(address) as channel:
        events = list(model_pb2_grpc.ModelStub(channel).CreateState(messages(), timeout=600))
    if events[-1].response.WhichOneof("outcome") != "result":
        raise RuntimeError(f"the upload was refused: {events[-1]}")


def _fifo_calls(address: str, stop: threading.Event) -> int:
    calls = 0
    with LauncherClient(address) as client:
        while not stop.is_set():
            client.model.create_state(
                model_id="bench-fifo", name="f", params=[], execution_location=TEMPORARY
            )
            calls += 1
    return calls


def measure(settings: Settings) -> list[Figure]:
    tensors = settings.count(1_000_000, 100_000)
    idle_calls = settings.count(300, 50)
    with running_launcher() as launcher:
        folder = launcher.root / "models" / "bench-fifo"
        folder.mkdir()
        (folder / "main.py").write_text("model = {'createModelState': lambda o: None}\n")
        os.mkfifo(folder / "model.toml")
        with LauncherClient(launcher.address) as client:
            client.model.get_models()
            idle = _cheap_calls(client, threading.Event(), idle_calls)
            stop = threading.Event()
            fifo = threading.Thread(target=_fifo_calls, args=(launcher.address, stop))
            upload_done = threading.Event()

            def upload() -> None:
                try:
                    _upload(launcher.address, tensors)
                finally:
                    upload_done.set()

            uploader = threading.Thread(target=upload)
            fifo.start()
            uploader.start()
            attacked = _cheap_calls(client, upload_done, 100_000)
            uploader.join()
            stop.set()
            fifo.join()
    return [
        Figure(
            name="15. other client's GetModels p99 during a 10^6-tensor upload + FIFO model.toml",
            value=percentile(attacked, 99) * 1000,
            unit="ms",
            reference_name="idle launcher",
            reference=percentile(idle, 99) * 1000,
            target=Target("value", "<=", 100),
            detail={
                "tensors": tensors,
                "samples_attacked": len(attacked),
                "samples_idle": len(idle),
                "attacked_max_ms": max(attacked) * 1000 if attacked else 0,
            },
        )
    ]
