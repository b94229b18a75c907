"""``client.dataset``: the Dataset service's methods, named and shaped as on the platform.

Also reads a GetEntries stream back into entries: an entry may span several messages (its
first names it and its size, the rest carry more bytes), so entries of any size can be read
without raising gRPC's message size limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import grpc

from launcher.client import responses as resp
from launcher.client.call import Caller, LauncherConnectionError, answering
from launcher.client.requests import (
    dataset_keys_to_proto,
    entries_to_proto,
    filter_ids,
    need_str,
    page,
    str_list,
)
from launcher.client.stream import (
    add_entries_requests,
    add_entries_wire,
    keyed_payloads,
    tensors_payload,
)
from launcher.v1 import dataset_pb2, dataset_pb2_grpc

ADD_ENTRIES_METHOD = "/launcher.v1.Dataset/AddEntries"


class DatasetApi:
    """Dataset methods; each returns ``{"result": ...}`` or ``{"error": {...}}``."""

    def __init__(
        self,
        stub: dataset_pb2_grpc.DatasetStub,
        caller: Caller,
        channel: grpc.Channel | None = None,
    ) -> None:
        self._stub = stub
        self._call = caller
        # AddEntries without a request serializer: its chunk messages are sent already
        # serialized (``add_entries_wire``), one copy of the data instead of three.
        self._add_entries_wire = (
            channel.stream_unary(
                ADD_ENTRIES_METHOD,
                request_serializer=None,
                response_deserializer=dataset_pb2.AddEntriesResponse.FromString,
            )
            if channel is not None
            else None
        )

    @answering
    def create_dataset(
        self, name: str, description: str, keys: list[dict[str, Any]]
    ) -> dict[str, Any]:
        request = dataset_pb2.CreateDatasetRequest(
            name=need_str(name, "name"),
            description=need_str(description, "description"),
            keys=dataset_keys_to_proto(keys),
        )
        response = self._call.unary(self._stub.CreateDataset, request)
        return resp.outcome(
            response,
            lambda r: {"datasetId": r.dataset_id, "datasetVersionId": r.dataset_version_id},
        )

    @answering
    def add_entries(self, dataset_id: str, keys: list[dict[str, Any]]) -> dict[str, Any]:
        """Append entries: ``keys=[{"key", "data": [tensors]}]``, one tensor per entry."""
        payloads = keyed_payloads(keys, "keys", tensors_payload)
        dataset_id = need_str(dataset_id, "datasetId")
        method: Any = self._add_entries_wire
        requests: Iterator[Any]
        if method is not None:
            requests = add_entries_wire(dataset_id, payloads)
        else:
            method, requests = self._stub.AddEntries, add_entries_requests(dataset_id, payloads)
        response = self._call.unary(method, requests)
        return resp.outcome(response, lambda r: {"datasetVersionId": r.dataset_version_id})

    @answering
    def get_datasets(
        self, offset: int = 0, limit: int = 20, filter: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        first, count = page(offset, limit)
        ids = str_list(filter_ids(filter).get("ids", []), "filter.ids")
        request = dataset_pb2.GetDatasetsRequest(offset=first, limit=count, ids=ids)
        return resp.outcome(self._call.unary(self._stub.GetDatasets, request), resp.datasets)

    @answering
    def get_entries(self, dataset_id: str, entries: dict[str, int] | list[int]) -> dict[str, Any]:
        """``{"keys": [{"name", "data": [{"index", "data": Tensor}]}]}``, keys in stream order."""
        request = dataset_pb2.GetEntriesRequest(
            dataset_id=need_str(dataset_id, "datasetId"), entries=entries_to_proto(entries)
        )
        return read_entries(self._call.stream(self._stub.GetEntries, request))

    @answering
    def remove_entries(
        self, dataset_id: str, entries: dict[str, int] | list[int]
    ) -> dict[str, Any]:
        request = dataset_pb2.RemoveEntriesRequest(
            dataset_id=need_str(dataset_id, "datasetId"), entries=entries_to_proto(entries)
        )
        return resp.outcome(self._call.unary(self._stub.RemoveEntries, request), resp.empty)

    @answering
    def delete_dataset(self, dataset_id: str) -> dict[str, Any]:
        request = dataset_pb2.DatasetRef(dataset_id=need_str(dataset_id, "datasetId"))
        return resp.outcome(self._call.unary(self._stub.DeleteDataset, request), resp.empty)


def read_entries(chunks: Iterable[dataset_pb2.GetEntriesChunk]) -> dict[str, Any]:
    """``{"result": {"keys": [...]}}`` of a GetEntries stream, or the error it carries.

    Raises LauncherConnectionError when the stream breaks the entry framing or sends bytes
    that are not one tensor per entry: the launcher, not the request, is at fault then.
    """
    keys: dict[str, list[dict[str, Any]]] = {}
    entry: _Entry | None = None
    for chunk in chunks:
        if chunk.HasField("error"):
            return {"error": resp.error_dict(chunk.error)}
        if chunk.key:
            if entry is not None:
                entry.cut_short()
            # byte_size 0: the whole entry is in this one message.
            entry = _Entry(chunk.key, chunk.index, chunk.byte_size or len(chunk.data))
        elif entry is None:
            raise LauncherConnectionError("entries stream sent data before naming its entry")
        if entry.add(chunk.data):
            keys.setdefault(entry.key, []).append({"index": entry.index, "data": entry.tensor()})
            entry = None
    if entry is not None:
        entry.cut_short()
    return {"result": {"keys": [{"name": k, "data": v} for k, v in keys.items()]}}


class _Entry:
    """One entry's bytes as they arrive, checked against the size its first message gave."""

    def __init__(self, key: str, index: int, byte_size: int) -> None:
        self.key = key
        self.index = index
        self.byte_size = byte_size
        self._data: bytes | bytearray = b""

    def add(self, data: bytes) -> bool:
        """Append ``data``; True once the entry is complete."""
        if not self._data:
            self._data = data  # the common single-message entry is used without a copy
        else:
            if isinstance(self._data, bytes):
                self._data = bytearray(self._data)
            self._data += data
        if len(self._data) > self.byte_size:
            raise LauncherConnectionError(
                f"entry {self.index} of key {self.key!r} sent more than its {self.byte_size} bytes"
            )
        return len(self._data) == self.byte_size

    def cut_short(self) -> None:
        raise LauncherConnectionError(
            f"entry {self.index} of key {self.key!r} ended after {len(self._data)} of "
            f"{self.byte_size} bytes"
        )

    def tensor(self) -> Any:
        from runtime import tensor

        try:
            value, end = tensor.deserialize(self._data)
        except tensor.TensorError as exc:
            raise LauncherConnectionError(f"launcher sent an invalid tensor: {exc}") from exc
        if end != len(self._data):
            raise LauncherConnectionError("launcher sent bytes after an entry's tensor")
        return value
