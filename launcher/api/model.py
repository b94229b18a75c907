"""The Model service: createState (streamed both ways) and the state API."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, cast

import grpc

from launcher.api import convert
from launcher.api.convert import unknown_error
from launcher.api.intake import Intake, WholeRequest
from launcher.api.joblogs import JobLogApi
from launcher.api.snapshots import SnapshotApi
from launcher.api.states import StateApi
from launcher.auth import access
from launcher.auth.quotas import Reservation
from launcher.errors import Conflict, InvalidParameter, ModelNotFound, NotFound, RequestError
from launcher.jobs.job import PhaseEvent
from launcher.jobs.manager import JobManager, JobRefused
from launcher.observe import oplog
from launcher.store.jobs import JobRecords
from launcher.store.models import ModelRegistry
from launcher.v1 import common_pb2, model_pb2, model_pb2_grpc

log = logging.getLogger("launcher.api")

#: Set by the API-key interceptor around a CreateStateUnary call: told the accepted state id
#: (the streamed call shows it the ``accepted_state_id`` event instead).
on_accepted: contextvars.ContextVar[Callable[[str], None] | None] = contextvars.ContextVar(
    "on_accepted", default=None
)


def _request_error_event(err: RequestError) -> model_pb2.CreateStateEvent:
    oplog.refused("createState", err.code, err.fields.get("reason"))
    return model_pb2.CreateStateEvent(response=convert.create_state_response(err))


class ModelServicer(JobLogApi, SnapshotApi, StateApi, model_pb2_grpc.ModelServicer):
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

    async def CreateState(
        self,
        request_iterator: AsyncIterator[model_pb2.CreateStateRequest],
        context: grpc.aio.ServicerContext,
        phases: bool = True,
    ) -> AsyncGenerator[model_pb2.CreateStateEvent, None]:
        """The streamed call; ``phases=False`` (the one-message call) leaves out the phase
        events, which nobody would read."""
        try:
            first = await self.intake.next_message(request_iterator)
        except RequestError as e:  # nothing sent for --intake-idle-seconds
            yield _request_error_event(e)
            return
        if first is None:
            yield _request_error_event(InvalidParameter("header", "the request stream was empty"))
            return
        caller = access.current()
        try:
            reservation = await self._admit(caller, first)
        except RequestError as e:
            yield _request_error_event(e)
            return
        try:
            request = await self.intake.receive(first, request_iterator)
        except RequestError as e:
            if reservation is not None:
                reservation.release()
            yield _request_error_event(e)
            return
        except Exception:
            if reservation is not None:
                reservation.release()
            yield _request_error_event(unknown_error("createState intake"))
            return
        request.tenant = caller.tenant if caller.key is not None else None
        if self.phase_caps is not None and request.model is not None:
            request.model = self.phase_caps.clamp(request.model)
        request.quota = reservation  # released when the job ends and its spool is gone
        try:
            # Without keys (one tenant, no owner checks) the one-message call's accepted rows
            # wait for its result; with keys they are written at once, so that the tenant
            # sees its running job (getCreatingStates) and nobody else can use its id.
            late_rows = not phases and request.tenant is None
            job = await self.jobs.submit(request, id_given_out=not late_rows)
        except JobRefused as e:  # draining: refused at once, no state id handed out
            oplog.refused("createState", e.result.code, "the launcher is draining")
            yield model_pb2.CreateStateEvent(response=convert.create_state_response(e.result))
            return
        queue = job.subscribe(phases)
        try:
            await job.accepted()
        except Exception:
            log.exception("job %s: its accepted record could not be written", job.state_id)
            job.cancel()
            yield _request_error_event(unknown_error("createState accept"))
            return
        yield model_pb2.CreateStateEvent(accepted_state_id=job.state_id)
        while True:
            item = await queue.get()
            if isinstance(item, PhaseEvent):
                if not phases:
                    continue
                yield model_pb2.CreateStateEvent(
                    phase=model_pb2.PhaseEvent(
                        finished=item.finished,
                        phase=item.phase.value,
                        state_id=job.state_id,
                        duration=item.duration or 0,
                    )
                )
            else:
                yield model_pb2.CreateStateEvent(response=convert.create_state_response(item))
                return

    async def CreateStateUnary(
        self, request: model_pb2.CreateStateUnaryRequest, context: grpc.aio.ServicerContext
    ) -> model_pb2.CreateStateResponse:
        """CreateState of a request carried in one message: the same path (intake, limits,
        job) with its events kept here; only the response goes back."""
        # (views of its parts, read as the intake reads messages: WhichOneof and the part)
        whole = cast(AsyncIterator[model_pb2.CreateStateRequest], WholeRequest(request))
        events = self.CreateState(whole, context, phases=False)
        try:
            async for event in events:
                kind = event.WhichOneof("event")
                if kind == "accepted_state_id":
                    tell = on_accepted.get()
                    if tell is not None:
                        tell(event.accepted_state_id)
                elif kind == "response":
                    return event.response
        finally:
            await events.aclose()
        raise AssertionError("CreateState ended without a response")

    async def _admit(self, caller: access.Caller, first: Any) -> Reservation | None:
        """The tenant checks of a createState header, then its inline bytes reserved (they
        are spooled to disk until the job ends, so they count towards the quota)."""
        if first.WhichOneof("part") != "header":
            return None  # intake answers invalid_parameter
        header = first.header
        if self.tenancy is not None and not caller.admin:  # an admin may use anything
            await asyncio.to_thread(self.tenancy.header, caller, header)
        if self.quotas is None or caller.max_stored_bytes is None:
            return None
        inline = sum(
            max(0, p.inline.byte_size) for p in header.params if p.WhichOneof("data") == "inline"
        )
        # Growing: the worker's state keys are charged to it as they arrive.
        return await self.quotas.areserve(
            caller.tenant, caller.max_stored_bytes, inline, growing=True
        )

    async def _check_state(self, state_id: str) -> None:
        if self.tenancy is not None:
            await asyncio.to_thread(self.tenancy.state, access.current(), state_id)

    async def WaitForStateToBeCreated(
        self, request: model_pb2.StateRef, context: grpc.aio.ServicerContext
    ) -> model_pb2.CreateStateResponse:
        try:
            await self._check_state(request.state_id)
        except RequestError as e:
            return model_pb2.CreateStateResponse(error=convert.error_to_proto(e))
        job = self.jobs.jobs.get(request.state_id)
        if job is not None and job.model_id == request.model_id:
            response = await asyncio.shield(job.response)
            return convert.create_state_response(response)
        found = await asyncio.to_thread(self.records.get, request.model_id, request.state_id)
        if found is None:
            return model_pb2.CreateStateResponse(
                error=convert.error_to_proto(NotFound("state_not_found"))
            )
        _status, recorded = found
        if recorded is not None:
            return convert.create_state_response(recorded)
        job = self.jobs.jobs.get(request.state_id)  # recorded as running: it is ending now
        if job is None:
            return model_pb2.CreateStateResponse(
                error=convert.error_to_proto(NotFound("state_not_found"))
            )
        return convert.create_state_response(await asyncio.shield(job.response))

    async def CancelCreateState(
        self, request: model_pb2.StateRef, context: grpc.aio.ServicerContext
    ) -> common_pb2.EmptyResponse:
        if not self.models.exists(request.model_id):
            return convert.empty_error(ModelNotFound(request.model_id))
        try:
            await self._check_state(request.state_id)
        except RequestError as e:
            return convert.empty_error(e)
        job = self.jobs.jobs.get(request.state_id)
        if job is None or job.model_id != request.model_id:
            found = await asyncio.to_thread(self.records.get, request.model_id, request.state_id)
            if found is None:
                return convert.empty_error(NotFound("state_not_found"))
            return convert.empty_error(Conflict("state_already_created"))
        if job.response.done():
            return convert.empty_error(Conflict("state_already_created"))
        job.cancel()
        return convert.empty_ok()

    async def GetCreatingStates(
        self, request: model_pb2.ModelRef, context: grpc.aio.ServicerContext
    ) -> model_pb2.GetCreatingStatesResponse:
        caller = access.current()
        if not self.models.exists(request.model_id):
            return model_pb2.GetCreatingStatesResponse(
                error=convert.error_to_proto(ModelNotFound(request.model_id))
            )
        creating = [
            j
            for j in self.jobs.creating(request.model_id)
            if caller.admin or j.request.tenant == caller.tenant
        ]
        await self.jobs.ensure_accepted(creating)  # their records exist once they are named
        states = [
            model_pb2.CreatingState(id=j.state_id, name=j.name, started_at=j.started_at_ms)
            for j in creating
        ]
        return model_pb2.GetCreatingStatesResponse(
            result=model_pb2.GetCreatingStatesResponse.Result(states=states)
        )
