"""Turning a CreateState request stream into a JobRequest, or a RequestError.

Order matters: the header is checked field by field (here, against ``launcher.rules``), then
everything it names is resolved (``launcher.jobs.resolve``, in a thread), then the inline
params' bytes are received — validated tensor by tensor and spooled to unlinked files by
``launcher.store.spool``, in a thread, never held in memory — and checked against the
model's parameter definitions. The event loop only moves messages: another client's call is
never waiting behind anyone's upload.

Bounds: at most ``max_concurrent`` intakes at once (``max_per_tenant`` per tenant), at most
``max_request_bytes`` of inline data per request and ``max_tensors_per_param`` tensors per
param, and a stream that sends nothing for ``idle_seconds`` is ended.

CreateState's request messages are parsed by ``parse_create_state_request`` (the gRPC
server's deserializer for the method): a chunk message in protobuf's own encoding becomes a
``ChunkRequest`` whose data is a view of the received bytes, where protobuf copied each chunk
twice (into the message, then out of it as ``bytes``); anything else is parsed by protobuf.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import grpc

from launcher import rules
from launcher.api.placement import placeable_spec
from launcher.api.validation import check_id, check_mounts, check_name
from launcher.api.write_ahead import WriteAhead
from launcher.errors import RequestError, invalid
from launcher.executors.base import Executor
from launcher.jobs.request import JobRequest
from launcher.jobs.resolve import (
    DatasetParam,
    DatasetSource,
    LauncherLookup,
    MountRef,
    Resolver,
)
from launcher.rules import IntakeLimits
from launcher.store.models import ModelRegistry
from launcher.store.snapshots import SnapshotStore
from launcher.store.spool import Spool, open_spool_file, remove_spool_leftovers
from launcher.store.states import StateStore
from launcher.v1 import model_pb2

#: A param of more tensors than this is finished (its offset columns built) in a thread.
MANY_TENSORS = 10_000

__all__ = [
    "ChunkRequest",
    "Intake",
    "IntakeLimits",
    "create_state_handler",
    "open_spool_file",
    "parse_create_state_request",
    "WholeRequest",
    "remove_spool_leftovers",
]

_UINT32_LIMIT = 1 << 32


class ParamChunkView(NamedTuple):
    """A ``ParamChunk`` whose ``data`` is a view of the received message."""

    param_index: int
    data: memoryview


class ChunkRequest:
    """A ``CreateStateRequest`` holding a chunk, as the intake reads one (``WhichOneof`` and
    ``chunk``), parsed without copying its data."""

    __slots__ = ("chunk",)

    def __init__(self, chunk: ParamChunkView) -> None:
        self.chunk = chunk

    def WhichOneof(self, oneof_group: str) -> str:  # noqa: N802 - protobuf's name
        if oneof_group != "part":
            raise ValueError(f"CreateStateRequest has no oneof {oneof_group!r}")
        return "chunk"


class HeaderRequest:
    """A ``CreateStateRequest`` holding ``header``, as the intake reads one."""

    __slots__ = ("header",)

    def __init__(self, header: model_pb2.CreateStateHeader) -> None:
        self.header = header

    def WhichOneof(self, oneof_group: str) -> str:  # noqa: N802 - protobuf's name
        if oneof_group != "part":
            raise ValueError(f"CreateStateRequest has no oneof {oneof_group!r}")
        return "header"


def read_varint(data: bytes, at: int) -> tuple[int, int]:
    """The varint at ``at`` and the position after it; (-1, at) where none ends in 10 bytes
    or before the end."""
    value = shift = 0
    for i in range(at, min(at + 10, len(data))):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i + 1
        shift += 7
    return -1, at


def parse_create_state_request(data: bytes) -> model_pb2.CreateStateRequest | ChunkRequest:
    """One CreateState request message. Exactly ``chunk {param_index?, data}`` in protobuf's
    encoding (each field once, in order, lengths ending the message) becomes a
    ``ChunkRequest``: the values protobuf would give, the data a view. Every other message,
    malformed ones included, is ``CreateStateRequest.FromString``'s, with its errors."""
    end = len(data)
    if end >= 3 and data[0] == 0x12:  # field 2 (chunk), length-delimited
        length, at = read_varint(data, 1)
        if length >= 0 and at + length == end:
            index = 0
            if at < end and data[at] == 0x08:  # field 1 (param_index), varint
                index, at = read_varint(data, at + 1)
            if 0 <= index < _UINT32_LIMIT and at < end and data[at] == 0x12:  # field 2 (data)
                size, at = read_varint(data, at + 1)
                if size >= 0 and at + size == end:
                    return ChunkRequest(ParamChunkView(index, memoryview(data)[at:]))
    return model_pb2.CreateStateRequest.FromString(data)


def create_state_handler(servicer: Any) -> grpc.RpcMethodHandler:
    """CreateState's method handler with ``parse_create_state_request`` as its deserializer."""
    return grpc.stream_stream_rpc_method_handler(
        servicer.CreateState,
        request_deserializer=parse_create_state_request,
        response_serializer=model_pb2.CreateStateEvent.SerializeToString,
    )


def _tenant() -> str:
    try:
        from launcher.auth import access
    except ImportError:  # pragma: no cover - the auth package is always there
        return ""
    return str(getattr(access.current(), "tenant", ""))


class WholeRequest:
    """The one-message call's request (``CreateStateUnary``) as the stream of messages
    ``receive`` reads: all of them are here already."""

    def __init__(self, request: model_pb2.CreateStateUnaryRequest) -> None:
        # Views of the request's parts (a CreateStateRequest would copy the header).
        self._messages: Iterator[HeaderRequest | ChunkRequest] = iter(
            [
                HeaderRequest(request.header),
                *(ChunkRequest(chunk) for chunk in request.chunks),  # type: ignore[arg-type]
            ]
        )

    def __aiter__(self) -> WholeRequest:
        return self

    async def __anext__(self) -> HeaderRequest | ChunkRequest:
        message = self.next_now()
        if message is None:
            raise StopAsyncIteration
        return message

    def next_now(self) -> HeaderRequest | ChunkRequest | None:
        return next(self._messages, None)


class Intake:
    def __init__(
        self,
        models: ModelRegistry,
        states: StateStore,
        datasets: DatasetSource,
        launchers: LauncherLookup,
        spool_dir: Path,
        snapshots: SnapshotStore | None = None,
        executor: Executor | None = None,
        limits: IntakeLimits | None = None,
    ) -> None:
        self.executor = executor
        self.models = models
        self.spool_dir = spool_dir
        self.limits = limits or IntakeLimits()
        self.resolver = Resolver(models, states, datasets, launchers, snapshots)
        self._active = 0
        self._per_tenant: Counter[str] = Counter()

    async def next_message(
        self, stream: AsyncIterator[model_pb2.CreateStateRequest]
    ) -> model_pb2.CreateStateRequest | None:
        """The stream's next message (None at its end); an idle stream is ended. A request
        whose messages are all here (the one-message call) needs no timer."""
        if isinstance(stream, WholeRequest):
            return stream.next_now()
        try:
            async with asyncio.timeout(self.limits.idle_seconds):  # no task per message
                return await anext(stream)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise invalid(
                "params",
                f"the request stream sent nothing for {self.limits.idle_seconds:g} s "
                "(--intake-idle-seconds); it was ended",
            ) from None

    @contextmanager
    def _slot(self) -> Iterator[None]:
        tenant = _tenant()
        if self._active >= self.limits.max_concurrent:
            raise RequestError(
                "too_many_requests",
                reason=f"the launcher receives {self.limits.max_concurrent} requests already; "
                "retry later",
            )
        if self._per_tenant[tenant] >= self.limits.max_per_tenant:
            raise RequestError(
                "too_many_requests",
                reason=f"tenant {tenant!r} has {self.limits.max_per_tenant} requests being "
                "received already; retry later",
            )
        self._active += 1
        self._per_tenant[tenant] += 1
        try:
            yield
        finally:
            self._active -= 1
            self._per_tenant[tenant] -= 1
            if not self._per_tenant[tenant]:
                del self._per_tenant[tenant]

    async def receive(
        self, first: model_pb2.CreateStateRequest, rest: AsyncIterator[model_pb2.CreateStateRequest]
    ) -> JobRequest:
        if first.WhichOneof("part") != "header":
            raise invalid("header", "the first message of CreateState must be the header")
        header = first.header
        with self._slot():
            request, mounts, dataset_params = self._check_header(header)
            try:
                started = time.monotonic_ns()
                await self.resolver.aresolve(request, mounts, dataset_params)
                request.resolve_ns = time.monotonic_ns() - started
                await self._receive_inline(header, request, rest)
            except BaseException:
                request.close()
                raise
        return request

    # ---- the header ----

    def _check_header(
        self, header: model_pb2.CreateStateHeader
    ) -> tuple[JobRequest, list[MountRef], list[DatasetParam]]:
        model_id = rules.MODEL_ID.check("modelId", header.model_id)
        name = check_name("name", header.name)
        if len(header.params) > rules.MAX_PARAMS:
            raise invalid("params", f"at most {rules.MAX_PARAMS} params")
        seen: set[str] = set()
        dataset_params: list[DatasetParam] = []
        inline_bytes = 0
        for i, param in enumerate(header.params):
            rules.PARAM_NAME.check(f"params[{i}].name", param.name)
            if param.name in seen:
                raise invalid(f"params[{i}].name", f"the name {param.name!r} is used twice")
            seen.add(param.name)
            kind = param.WhichOneof("data")
            if kind is None:
                raise invalid(f"params[{i}].data", "must be a list of tensors or a dataset")
            if kind == "inline":
                inline_bytes += param.inline.byte_size
                if inline_bytes > self.limits.max_request_bytes:
                    raise invalid(
                        f"params[{i}].data",
                        f"inline data is limited to {self.limits.max_request_bytes} bytes per "
                        "request (--max-request-bytes)",
                    )
            if kind == "dataset":
                dataset_params.append(
                    DatasetParam(
                        i,
                        param.name,
                        rules.DATASET_ID.check(
                            f"params[{i}].data.datasetId", param.dataset.dataset_id
                        ),
                        rules.DATASET_KEY_NAME.check(
                            f"params[{i}].data.datasetKey", param.dataset.dataset_key
                        ),
                    )
                )
        mounts = check_mounts(header.mount_models, model_id)
        location = header.execution_location.WhichOneof("location")
        request = JobRequest(model_id=model_id, name=name, model=None, startup_failure=None)
        if location == "temporary_launcher_spec":
            request.spec = placeable_spec(
                "executionLocation.spec",
                header.execution_location.temporary_launcher_spec,
                self.executor,
            )
        elif location == "persistent_launcher_id":
            request.persistent_launcher_id = check_id(
                "executionLocation.persistentLauncherId",
                header.execution_location.persistent_launcher_id,
                "a persistent launcher id",
            )
        else:
            raise invalid(
                "executionLocation",
                "must be {type: 'persistentLauncher', persistentLauncherId} or "
                "{type: 'temporaryLauncher', spec}",
            )
        return request, mounts, dataset_params

    # ---- inline data ----

    async def _receive_inline(
        self,
        header: model_pb2.CreateStateHeader,
        request: JobRequest,
        rest: AsyncIterator[model_pb2.CreateStateRequest],
    ) -> None:
        model_rules = {r.name: r for r in request.model.parameters} if request.model else {}
        names = {p.name for p in header.params}
        for name, rule in model_rules.items():
            if rule.required and name not in names:
                raise invalid("params", f"the model requires a param named {name!r}")
        pending: list[tuple[int, model_pb2.Param, Spool]] = []
        for i, param in enumerate(header.params):
            if param.WhichOneof("data") != "inline":
                continue
            definition = model_rules.get(param.name)
            spool = Spool(
                self.spool_dir,
                f"params[{i}]",
                param.inline.byte_size,
                self.limits.max_tensors_per_param,
                definition.allowed_types if definition else None,
                definition.shape if definition else None,
            )
            pending.append((i, param, spool))
        try:
            await self._stream_chunks(pending, rest)
            for _, param, spool in pending:
                if len(spool.starts) > MANY_TENSORS:  # its columns are O(tensors): off the loop
                    source = await asyncio.to_thread(spool.finish, param.name)
                else:
                    source = spool.finish(param.name)
                request.params[param.name] = source
        finally:
            for _, _, spool in pending:
                spool.close()
        request.params = {p.name: request.params[p.name] for p in header.params}

    async def _stream_chunks(
        self,
        pending: list[tuple[int, model_pb2.Param, Spool]],
        rest: AsyncIterator[model_pb2.CreateStateRequest],
    ) -> None:
        """Each chunk is validated and written in a thread while the next one is received, so
        receiving and spooling overlap; at most one chunk is in flight (memory stays bounded
        and writes keep their order)."""
        cursor = 0
        writes = WriteAhead()
        try:
            while (message := await self.next_message(rest)) is not None:
                await writes.wait()
                if message.WhichOneof("part") != "chunk":
                    raise invalid("header", "the header may be sent only once")
                chunk = message.chunk
                while cursor < len(pending) and pending[cursor][2].complete:
                    cursor += 1
                if cursor >= len(pending) or chunk.param_index != pending[cursor][0]:
                    raise invalid(
                        f"params[{chunk.param_index}].data",
                        "data chunks must follow the header, param after param in order, and "
                        "add up to each param's declared byte size",
                    )
                writes.start(pending[cursor][2].feed, chunk.data)
            await writes.wait()
        finally:
            await writes.settle()
