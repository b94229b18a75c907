"""``client.dataset``: the Dataset service's methods, named and shaped as on the platform."""

from __future__ import annotations

from typing import Any

from launcher import _client_responses as resp
from launcher._client_call import Caller, LauncherConnectionError, answering
from launcher._client_requests import (
    dataset_keys_to_proto,
    entries_to_proto,
    filter_ids,
    need_str,
    page,
    str_list,
)
from launcher._client_stream import add_entries_requests, keyed_payloads, tensors_payload
from launcher.v1 import dataset_pb2, dataset_pb2_grpc


class DatasetApi:
    """Dataset methods; each returns ``{"result": ...}`` or ``{"error": {...}}``."""

    def __init__(self, stub: dataset_pb2_grpc.DatasetStub, caller: Caller) -> None:
        self._stub = stub
        self._call = caller

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
        requests = add_entries_requests(need_str(dataset_id, "datasetId"), payloads)
        response = self._call.unary(self._stub.AddEntries, requests)
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
        from runtime import tensor

        keys: dict[str, list[dict[str, Any]]] = {}
        for chunk in self._call.stream(self._stub.GetEntries, request):
            if chunk.HasField("error"):
                return {"error": resp.error_dict(chunk.error)}
            try:
                value, end = tensor.deserialize(chunk.data)
            except tensor.TensorError as exc:
                raise LauncherConnectionError(f"launcher sent an invalid tensor: {exc}") from exc
            if end != len(chunk.data):
                raise LauncherConnectionError("launcher sent bytes after an entry's tensor")
            keys.setdefault(chunk.key, []).append({"index": chunk.index, "data": value})
        return {"result": {"keys": [{"name": k, "data": v} for k, v in keys.items()]}}

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
