"""The PersistentLauncher service: create, list, sample and delete persistent launchers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from launcher import outcomes as oc
from launcher.api import convert
from launcher.api.placement import placeable_spec
from launcher.api.validation import check_id, check_name
from launcher.auth import access
from launcher.auth.access import AccessCheck
from launcher.auth.owners import LAUNCHER
from launcher.errors import NotFound, RequestError, invalid
from launcher.executors.base import Executor
from launcher.executors.sessions import SessionPool
from launcher.jobs.manager import JobManager
from launcher.observe.sysinfo import LauncherSamplers, SysinfoSampler
from launcher.spec import LauncherSpec
from launcher.store.launchers import PersistentLauncherRecord, PersistentLaunchers
from launcher.v1 import common_pb2, persistent_launcher_pb2_grpc
from launcher.v1 import persistent_launcher_pb2 as pl_pb2

MAX_PAGE = 1000


def _spec_proto(spec: LauncherSpec) -> common_pb2.LauncherSpec:
    msg = common_pb2.LauncherSpec(cpus=spec.cpus, memory_mebibytes=spec.memory_mebibytes)
    if spec.disk_mebibytes is not None:
        msg.disk_mebibytes = spec.disk_mebibytes
    if spec.swap_mebibytes is not None:
        msg.swap_mebibytes = spec.swap_mebibytes
    if spec.gpus is not None:
        msg.gpus.model = spec.gpus.model
        msg.gpus.count = spec.gpus.count
    return msg


class PersistentLauncherServicer(persistent_launcher_pb2_grpc.PersistentLauncherServicer):
    #: Tenant checks (set by the server; None: one tenant).
    access_check: AccessCheck | None = None

    def __init__(
        self,
        launchers: PersistentLaunchers,
        jobs: JobManager,
        executor: Executor,
        sessions: SessionPool,
        root: Path,
    ) -> None:
        self.launchers = launchers
        self.jobs = jobs
        self.executor = executor
        self.sessions = sessions
        self.sampler = SysinfoSampler(root)
        #: Each launcher's own usage (its workers' cgroup), where the executor can tell it.
        self.launcher_samplers = (
            LauncherSamplers(executor.group_usage) if hasattr(executor, "group_usage") else None
        )

    async def start_sampling(self) -> None:
        """Sample the launchers that exist already (made before this process started)."""
        if hasattr(self.executor, "launcher_samples"):  # each sampled where it is held
            for record in await asyncio.to_thread(self.launchers.list):
                self.executor.open_group(record.id, record.spec)
            return
        if self.launcher_samplers is None:
            return
        for record in await asyncio.to_thread(self.launchers.list):
            self.launcher_samplers.add(record.id)

    async def _check(self, launcher_id: str) -> None:
        if self.access_check is not None:
            await self.access_check.acheck(access.current(), LAUNCHER, launcher_id)

    def _ensure_sampling(self) -> None:
        if self.sampler._task is None:
            self.sampler.start()

    async def CreatePersistentLauncher(
        self, request: pl_pb2.CreatePersistentLauncherRequest, context: grpc.aio.ServicerContext
    ) -> pl_pb2.CreatePersistentLauncherResponse:
        self._ensure_sampling()
        try:
            name = check_name("name", request.name)
            if not request.HasField("spec"):
                raise invalid("spec", "a persistent launcher needs a spec {cpus, memoryMebibytes}")
            spec = placeable_spec("spec", request.spec, self.executor)
            if self.access_check is None:
                record = await asyncio.to_thread(self.launchers.create, name, spec)
            else:  # the launcher and its owner in one transaction
                record = await asyncio.to_thread(
                    self.access_check.create_owned,
                    access.current(),
                    LAUNCHER,
                    lambda: self.launchers.create(name, spec),
                    lambda made: made.id,
                )
            self.executor.open_group(record.id, spec)
            if self.launcher_samplers is not None:  # sampled from its creation
                self.launcher_samplers.add(record.id)
        except RequestError as e:
            return pl_pb2.CreatePersistentLauncherResponse(error=convert.error_to_proto(e))
        return pl_pb2.CreatePersistentLauncherResponse(
            result=pl_pb2.CreatePersistentLauncherResponse.Result(persistent_launcher_id=record.id)
        )

    def _info(self, record: PersistentLauncherRecord) -> pl_pb2.PersistentLauncherInfo:
        running = [
            pl_pb2.RunningOperation(id=job.state_id, type="createState")
            for job in self.jobs.jobs.values()
            if job.request.persistent_launcher_id == record.id and not job.response.done()
        ]
        return pl_pb2.PersistentLauncherInfo(
            id=record.id,
            name=record.name,
            created_at=convert.unix_ms(record.created_at),
            spec=_spec_proto(record.spec),
            state="active",
            running=running,
        )

    async def GetPersistentLaunchers(
        self, request: pl_pb2.GetPersistentLaunchersRequest, context: grpc.aio.ServicerContext
    ) -> pl_pb2.GetPersistentLaunchersResponse:
        limit = request.limit or 20
        if limit > MAX_PAGE:
            return pl_pb2.GetPersistentLaunchersResponse(
                error=convert.error_to_proto(invalid("limit", f"at most {MAX_PAGE}"))
            )
        records = await asyncio.to_thread(self.launchers.list)
        if request.ids:
            wanted = set(request.ids)
            records = [r for r in records if r.id in wanted]
        if self.access_check is not None:
            visible = set(
                await asyncio.to_thread(
                    self.access_check.visible, access.current(), LAUNCHER, [r.id for r in records]
                )
            )
            records = [r for r in records if r.id in visible]
        page = records[request.offset : request.offset + limit]
        ids = {r.id for r in page}
        await self.jobs.ensure_accepted(  # the running jobs' records exist once they are named
            [
                j
                for j in self.jobs.jobs.values()
                if j.request.persistent_launcher_id in ids and not j.response.done()
            ]
        )
        return pl_pb2.GetPersistentLaunchersResponse(
            result=pl_pb2.GetPersistentLaunchersResponse.Result(
                persistent_launchers=[self._info(r) for r in page],
                total=len(records),
                offset=request.offset,
                limit=limit,
            )
        )

    async def GetSysinfo(
        self, request: pl_pb2.GetSysinfoRequest, context: grpc.aio.ServicerContext
    ) -> pl_pb2.GetSysinfoResponse:
        self._ensure_sampling()
        try:
            check_id("persistentLauncherId", request.persistent_launcher_id, "a launcher id")
            await self._check(request.persistent_launcher_id)
        except RequestError as e:
            return pl_pb2.GetSysinfoResponse(error=convert.error_to_proto(e))
        if not await asyncio.to_thread(self.launchers.exists, request.persistent_launcher_id):
            return pl_pb2.GetSysinfoResponse(
                error=convert.error_to_proto(NotFound("persistent_launcher_not_found"))
            )
        since = request.from_timestamp if request.HasField("from_timestamp") else None
        # Compared in the milliseconds the samples are reported in: a sample whose timestamp
        # is reported as T is in the answer to fromTimestamp=T.
        from_seconds = None if since is None else convert.seconds(since - 1)
        node_samples = getattr(self.executor, "launcher_samples", None)
        if node_samples is not None:  # sampled where the launcher is (a Ray node)
            samples = await node_samples(request.persistent_launcher_id, from_seconds)
        elif self.launcher_samplers is not None:
            samples = self.launcher_samplers.since(request.persistent_launcher_id, from_seconds)
        else:  # the machine's (an executor that cannot tell a launcher's own)
            samples = await asyncio.to_thread(self.sampler.since, from_seconds)
        if since is not None:
            samples = [s for s in samples if convert.unix_ms(s.timestamp) >= since]
        return pl_pb2.GetSysinfoResponse(
            result=pl_pb2.GetSysinfoResponse.Result(
                sysinfo=[
                    pl_pb2.SysinfoSample(
                        timestamp=convert.unix_ms(s.timestamp),
                        cpus=s.cpus,
                        memory=s.memory,
                        disk=s.disk,
                    )
                    for s in samples
                ],
                sandbox_layers=[f"{k}: {v}" for k, v in self.executor.layers().items()],
            )
        )

    async def DeletePersistentLauncher(
        self, request: pl_pb2.PersistentLauncherRef, context: grpc.aio.ServicerContext
    ) -> common_pb2.EmptyResponse:
        try:
            check_id("persistentLauncherId", request.persistent_launcher_id, "a launcher id")
            await self._check(request.persistent_launcher_id)
        except RequestError as e:
            return convert.empty_error(e)
        if not await asyncio.to_thread(self.launchers.delete, request.persistent_launcher_id):
            return convert.empty_error(NotFound("persistent_launcher_not_found"))
        for job in list(self.jobs.jobs.values()):
            if job.request.persistent_launcher_id == request.persistent_launcher_id:
                job.cancel(oc.LauncherTerminated())
        self.sessions.drop_launcher(request.persistent_launcher_id)
        self.executor.close_group(request.persistent_launcher_id)
        if self.launcher_samplers is not None:
            self.launcher_samplers.remove(request.persistent_launcher_id)
        return convert.empty_ok()
