"""``GetStateLogs``: a job's log by state id, once or followed until the job ends.

Part of the Model service (a mixin of ``ModelServicer``); access is checked as for the
state itself: the model must exist, the caller's key may use it (the auth interceptor), the
state id must be a job of that model, and of the caller's tenant (``_check_state``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from launcher.api import convert
from launcher.errors import ModelNotFound, NotFound, RequestError
from launcher.store.joblogs import JobLogs
from launcher.v1 import model_pb2

#: Lines per streamed message (a job's whole kept log is about 1 MiB by default).
LINES_PER_CHUNK = 2000


def _chunks(lines: list[dict[str, Any]], truncated: bool) -> list[model_pb2.StateLogChunk]:
    out = []
    for start in range(0, max(len(lines), 1), LINES_PER_CHUNK):
        out.append(
            model_pb2.StateLogChunk(
                lines=[
                    model_pb2.StateLogLine(
                        stream=line["stream"], timestamp=line["timestamp"], text=line["text"]
                    )
                    for line in lines[start : start + LINES_PER_CHUNK]
                ],
                truncated=truncated,
            )
        )
    return out


class JobLogApi:
    #: Set by the server: where the jobs' logs are.
    job_logs: JobLogs | None = None

    async def _log_access(self, request: model_pb2.GetStateLogsRequest) -> None:
        """``model_not_found``, ``access_denied`` or ``state_not_found``, else nothing."""
        self_: Any = self
        if not self_.models.exists(request.model_id):
            raise ModelNotFound(request.model_id)
        await self_._check_state(request.state_id)
        job = self_.jobs.jobs.get(request.state_id)
        if job is not None:
            if job.model_id != request.model_id:
                raise NotFound("state_not_found")
            return
        found = await asyncio.to_thread(self_.records.get, request.model_id, request.state_id)
        if found is None:
            raise NotFound("state_not_found")

    async def GetStateLogs(
        self, request: model_pb2.GetStateLogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[model_pb2.StateLogChunk]:
        try:
            await self._log_access(request)
        except RequestError as e:
            yield model_pb2.StateLogChunk(error=convert.error_to_proto(e))
            return
        logs = self.job_logs
        if logs is None:
            yield model_pb2.StateLogChunk()
            return
        if not request.follow:
            found = await logs.read(request.state_id)
            lines, truncated = found if found is not None else ([], False)
            for chunk in _chunks(lines, truncated):
                yield chunk
            return
        sent = False
        async for lines, truncated in logs.follow(request.state_id):
            for chunk in _chunks(lines, truncated):
                sent = True
                yield chunk
        if not sent:
            yield model_pb2.StateLogChunk()
