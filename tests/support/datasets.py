"""Shared helpers of the dataset tests: a real Dataset gRPC server on a Unix socket."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import grpc
import numpy as np

from launcher.api.dataset import DatasetServicer
from launcher.store.datasets import DatasetStore
from launcher.store.db import Database
from launcher.v1 import dataset_pb2, dataset_pb2_grpc
from runtime.tensor import serialize

pb = dataset_pb2


class DatasetServer:
    """A grpc.aio server with the DatasetServicer, run on its own event loop thread."""

    def __init__(self, root: Path) -> None:
        self.db = Database(root / "launcher.db")
        self.store = DatasetStore(root, self.db)
        # Unix socket paths are limited to ~100 bytes; pytest's tmp_path can be longer.
        self._sock_dir = Path(tempfile.mkdtemp(prefix="ds"))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        address = f"unix:{self._sock_dir / 'api.sock'}"
        self._server = self._call(self._start(address))
        self.channel = grpc.insecure_channel(address)
        self.stub = dataset_pb2_grpc.DatasetStub(self.channel)

    async def _start(self, address: str) -> grpc.aio.Server:
        server = grpc.aio.server()
        dataset_pb2_grpc.add_DatasetServicer_to_server(DatasetServicer(self.store), server)
        server.add_insecure_port(address)
        await server.start()
        return server

    def _call(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def close(self) -> None:
        self.channel.close()
        self._call(self._server.stop(grace=None))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self.db.close()
        shutil.rmtree(self._sock_dir, ignore_errors=True)

    # -- request helpers --------------------------------------------------------------------

    def create(self, keys: list[pb.DatasetKey], name: str = "d") -> pb.CreateDatasetResponse:
        return self.stub.CreateDataset(pb.CreateDatasetRequest(name=name, keys=keys))

    def create_ok(self, keys: list[pb.DatasetKey]) -> str:
        res = self.create(keys)
        assert res.WhichOneof("outcome") == "result", res
        return res.result.dataset_id

    def add(
        self,
        dataset_id: str,
        keys: dict[str, bytes],
        chunk_size: int = 7,
        sizes: dict[str, int] | None = None,
    ) -> pb.AddEntriesResponse:
        """Upload ``keys`` (name → concatenated tensors) in small chunks across key borders."""
        header = pb.AddEntriesHeader(
            dataset_id=dataset_id,
            keys=[
                pb.AddEntriesHeader.Key(key=k, byte_size=(sizes or {}).get(k, len(v)))
                for k, v in keys.items()
            ],
        )
        data = b"".join(keys.values())
        return self.stub.AddEntries(_messages(header, _slices(data, chunk_size)))

    def info(self, dataset_id: str) -> pb.DatasetInfo:
        res = self.stub.GetDatasets(pb.GetDatasetsRequest(ids=[dataset_id]))
        assert len(res.result.datasets) == 1, res
        return res.result.datasets[0]

    def entries(self, dataset_id: str, **selection: object) -> list[pb.GetEntriesChunk]:
        return list(
            self.stub.GetEntries(
                pb.GetEntriesRequest(dataset_id=dataset_id, entries=pb.EntrySelection(**selection))
            )
        )


def _slices(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _messages(
    header: pb.AddEntriesHeader, chunks: Iterable[bytes]
) -> Iterator[pb.AddEntriesRequest]:
    yield pb.AddEntriesRequest(header=header)
    for chunk in chunks:
        yield pb.AddEntriesRequest(chunk=chunk)


def key(
    name: str,
    required: bool = True,
    shape: list[int] | None = None,
    types: list[str] | None = None,
) -> pb.DatasetKey:
    return pb.DatasetKey(
        name=name,
        required=required,
        rules=pb.KeyRules(
            shape=shape or [], has_shape=shape is not None, allowed_types=types or []
        ),
    )


def tensors(*values: object) -> bytes:
    """Concatenated tensors of numpy arrays, nested lists or Python scalars."""
    return b"".join(serialize(np.asarray(v) if isinstance(v, list) else v) for v in values)


def error_of(response: object) -> dict[str, str]:
    err = response.error  # type: ignore[attr-defined]
    assert err.code, f"expected an error, got {response}"
    return {
        "code": err.code,
        "parameterName": err.parameter_name,
        "reason": err.reason,
        "datasetId": err.dataset_id,
        "datasetKey": err.dataset_key,
    }
