"""``client.persistent_launcher``: the PersistentLauncher service's methods."""

from __future__ import annotations

from typing import Any

from launcher.client import responses as resp
from launcher.client.call import Caller, answering
from launcher.client.requests import filter_ids, need_int, need_str, page, spec_to_proto, str_list
from launcher.v1 import persistent_launcher_pb2 as pl_pb2
from launcher.v1 import persistent_launcher_pb2_grpc


class PersistentLauncherApi:
    """Persistent launcher methods; each returns ``{"result": ...}`` or ``{"error": {...}}``."""

    def __init__(
        self, stub: persistent_launcher_pb2_grpc.PersistentLauncherStub, caller: Caller
    ) -> None:
        self._stub = stub
        self._call = caller

    @answering
    def create_persistent_launcher(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        request = pl_pb2.CreatePersistentLauncherRequest(
            name=need_str(name, "name"), spec=spec_to_proto(spec, "spec")
        )
        response = self._call.unary(self._stub.CreatePersistentLauncher, request)
        return resp.outcome(response, lambda r: {"persistentLauncherId": r.persistent_launcher_id})

    @answering
    def get_persistent_launchers(
        self, offset: int = 0, limit: int = 20, filter: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        first, count = page(offset, limit)
        ids = str_list(filter_ids(filter).get("ids", []), "filter.ids")
        request = pl_pb2.GetPersistentLaunchersRequest(offset=first, limit=count, ids=ids)
        response = self._call.unary(self._stub.GetPersistentLaunchers, request)
        return resp.outcome(response, resp.persistent_launchers)

    @answering
    def get_sysinfo(
        self, persistent_launcher_id: str, from_timestamp: int | None = None
    ) -> dict[str, Any]:
        """Samples since ``from_timestamp`` (milliseconds since the epoch, like ``timestamp``)."""
        request = pl_pb2.GetSysinfoRequest(
            persistent_launcher_id=need_str(persistent_launcher_id, "persistentLauncherId")
        )
        if from_timestamp is not None:
            request.from_timestamp = need_int(from_timestamp, "fromTimestamp")
        return resp.outcome(self._call.unary(self._stub.GetSysinfo, request), resp.sysinfo)

    @answering
    def delete_persistent_launcher(self, persistent_launcher_id: str) -> dict[str, Any]:
        request = pl_pb2.PersistentLauncherRef(
            persistent_launcher_id=need_str(persistent_launcher_id, "persistentLauncherId")
        )
        response = self._call.unary(self._stub.DeletePersistentLauncher, request)
        return resp.outcome(response, resp.empty)
