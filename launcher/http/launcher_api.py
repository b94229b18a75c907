"""``/v0/PersistentLauncher/<method>``: the platform's methods on the PersistentLauncher
servicer."""

from __future__ import annotations

from launcher.client import responses as resp
from launcher.client.requests import (
    filter_ids,
    need_int,
    need_str,
    page,
    spec_to_proto,
    str_list,
)
from launcher.http import platform
from launcher.http.call import Call, Handler, Reply, answer
from launcher.v1 import persistent_launcher_pb2 as pl_pb2

SERVICE = "PersistentLauncher"


def _launcher_id(call: Call) -> str:
    return need_str(call.params.get("persistentLauncherId"), "persistentLauncherId")


async def create_persistent_launcher(call: Call) -> Reply:
    request = pl_pb2.CreatePersistentLauncherRequest(
        name=need_str(call.params.get("name"), "name"),
        spec=spec_to_proto(call.params.get("spec"), "spec"),
    )
    response = await call.bridge.unary(SERVICE, "CreatePersistentLauncher", request, call.bearer)
    return answer(
        resp.outcome(response, lambda r: {"persistentLauncherId": r.persistent_launcher_id}),
        lambda r: r,
    )


async def get_persistent_launchers(call: Call) -> Reply:
    offset, limit = page(call.params.get("offset", 0), call.params.get("limit", 20))
    flt = filter_ids(call.params.get("filter"))
    request = pl_pb2.GetPersistentLaunchersRequest(offset=offset, limit=limit)
    if flt.get("ids") is not None:
        request.ids.extend(str_list(flt["ids"], "filter.ids"))
    response = await call.bridge.unary(SERVICE, "GetPersistentLaunchers", request, call.bearer)
    return answer(
        resp.outcome(response, resp.persistent_launchers),
        lambda r: platform.paged(r, "persistentLaunchers", platform.persistent_launcher),
    )


async def get_sysinfo(call: Call) -> Reply:
    request = pl_pb2.GetSysinfoRequest(persistent_launcher_id=_launcher_id(call))
    since = call.params.get("fromTimestamp")
    if since is not None:
        request.from_timestamp = need_int(since, "fromTimestamp")  # Unix ms, as on gRPC
    response = await call.bridge.unary(SERVICE, "GetSysinfo", request, call.bearer)
    return answer(resp.outcome(response, resp.sysinfo), platform.sysinfo)


async def delete_persistent_launcher(call: Call) -> Reply:
    request = pl_pb2.PersistentLauncherRef(persistent_launcher_id=_launcher_id(call))
    response = await call.bridge.unary(SERVICE, "DeletePersistentLauncher", request, call.bearer)
    return answer(resp.outcome(response, resp.empty), lambda r: r)


METHODS: dict[str, Handler] = {
    "createPersistentLauncher": create_persistent_launcher,
    "getPersistentLaunchers": get_persistent_launchers,
    "getSysinfo": get_sysinfo,
    "deletePersistentLauncher": delete_persistent_launcher,
}
