"""The Model service: createState (streamed both ways) and the state API."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from launcher.api import convert
from launcher.api.convert import unknown_error
from launcher.api.intake import Intake
from launcher.api.snapshots import SnapshotApi
from launcher.api.states import StateApi
from launcher.errors import RequestError
from launcher.jobs.job import PhaseEvent
from launcher.jobs.manager import JobManager
from launcher.store.jobs import JobRecords
from launcher.store.models import ModelRegistry
from launcher.v1 import common_pb2, model_pb2, model_pb2_grpc

log = logging.getLogger("launcher.api")


def _request_error_event(err: RequestError) -> model_pb2.CreateStateEvent:
    return model_pb2.CreateStateEvent(
        response=model_pb2.CreateStateResponse(error=convert.error_to_proto(err))
    )


class ModelServicer(SnapshotApi, StateApi, model_pb2_grpc.ModelServicer):
    def __init__(
        self,
        intake: Intake,
        jobs: JobManager,
        records: JobRecords,
        models: ModelRegistry,
        **state_api: Any,
    ) -> None:
        super().__init__(models=models, **state_api)
        self.intake = intake
        self.jobs = jobs
        self.records = records

    async def CreateState(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[model_pb2.CreateStateRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[model_pb2.CreateStateEvent]:
        try:
            first = await anext(request_iterator)
        except StopAsyncIteration:
            yield _request_error_event(
                RequestError(
                    "invalid_parameter",
                    parameterName="header",
                    reason="the request stream was empty",
                )
            )
            return
        try:
            request = await self.intake.receive(first, request_iterator)
        except RequestError as e:
            yield _request_error_event(e)
            return
        except Exception:
            yield _request_error_event(unknown_error("createState intake"))
            return
        job = await self.jobs.submit(request)
        queue = job.subscribe()
        yield model_pb2.CreateStateEvent(accepted_state_id=job.state_id)
        while True:
            item = await queue.get()
            if isinstance(item, PhaseEvent):
                yield model_pb2.CreateStateEvent(
                    phase=model_pb2.PhaseEvent(
                        finished=item.finished,
                        phase=item.phase,
                        state_id=job.state_id,
                        duration=item.duration or 0.0,
                    )
                )
            else:
                yield model_pb2.CreateStateEvent(response=convert.create_state_response(item))
                return

    async def WaitForStateToBeCreated(  # noqa: N802
        self, request: model_pb2.StateRef, context: grpc.aio.ServicerContext
    ) -> model_pb2.CreateStateResponse:
        job = self.jobs.jobs.get(request.state_id)
        if job is not None and job.model_id == request.model_id:
            response = await asyncio.shield(job.response)
            return convert.create_state_response(response)
        found = await asyncio.to_thread(self.records.get, request.model_id, request.state_id)
        if found is None:
            return model_pb2.CreateStateResponse(
                error=convert.error_to_proto(RequestError("state_not_found"))
            )
        _status, recorded = found
        if recorded is not None:
            return convert.create_state_response(recorded)
        job = self.jobs.jobs.get(request.state_id)  # recorded as running: it is ending now
        if job is None:
            return model_pb2.CreateStateResponse(
                error=convert.error_to_proto(RequestError("state_not_found"))
            )
        return convert.create_state_response(await asyncio.shield(job.response))

    async def CancelCreateState(  # noqa: N802
        self, request: model_pb2.StateRef, context: grpc.aio.ServicerContext
    ) -> common_pb2.EmptyResponse:
        if not self.models.exists(request.model_id):
            return convert.empty_error(RequestError("model_not_found"))
        job = self.jobs.jobs.get(request.state_id)
        if job is None or job.model_id != request.model_id:
            found = await asyncio.to_thread(self.records.get, request.model_id, request.state_id)
            code = "state_not_found" if found is None else "state_already_created"
            return convert.empty_error(RequestError(code))
        if job.response.done():
            return convert.empty_error(RequestError("state_already_created"))
        job.cancel()
        return convert.empty_ok()

    async def GetCreatingStates(  # noqa: N802
        self, request: model_pb2.ModelRef, context: grpc.aio.ServicerContext
    ) -> model_pb2.GetCreatingStatesResponse:
        if not self.models.exists(request.model_id):
            return model_pb2.GetCreatingStatesResponse(
                error=convert.error_to_proto(RequestError("model_not_found"))
            )
        states = [
            model_pb2.CreatingState(id=j.state_id, name=j.name, started_at=j.started_at)
            for j in self.jobs.creating(request.model_id)
        ]
        return model_pb2.GetCreatingStatesResponse(
            result=model_pb2.GetCreatingStatesResponse.Result(states=states)
        )
