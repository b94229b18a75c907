"""The gRPC server interceptor that enforces API keys, model permissions, rates and quotas.

Status codes (mapped by the client to the seed's error values): UNAUTHENTICATED →
``bad_credentials``, PERMISSION_DENIED → ``access_denied``, RESOURCE_EXHAUSTED →
``too_many_requests``. The concurrent-job quota answers ``quota_exceeded`` in the
response's ``error``, as the seed lists it among createState's errors (stored bytes are
reserved by the servicers, see ``launcher.auth.quotas``). Every call of a guarded service
runs with its key's ``Caller`` as ``launcher.auth.access.current()``, which the servicers'
tenant checks read. Only the launcher's own services are guarded: health checking and
reflection stay open, so probes and grpcurl work without a key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from google.protobuf.message import Message

from launcher.api.convert import error_to_proto
from launcher.api.model import on_accepted
from launcher.auth import access
from launcher.auth.cache import KeyCache
from launcher.auth.keys import ApiKey, KeyStore
from launcher.auth.limits import RateLimiter
from launcher.auth.quotas import JobQuota
from launcher.errors import RequestError
from launcher.jobs.manager import JobManager
from launcher.observe import oplog
from launcher.store.db import Database
from launcher.v1 import common_pb2, model_pb2

MODEL_SERVICE = "/launcher.v1.Model/"
GET_MODELS = MODEL_SERVICE + "GetModels"
CREATE_STATE = MODEL_SERVICE + "CreateState"
CREATE_STATE_UNARY = MODEL_SERVICE + "CreateStateUnary"
UPLOAD_STATE = MODEL_SERVICE + "UploadState"

GUARDED_PREFIX = "/launcher.v1."
_BEARER = "bearer "
Handler: TypeAlias = grpc.RpcMethodHandler
Context: TypeAlias = grpc.aio.ServicerContext


def _quota_error() -> common_pb2.Error:
    return error_to_proto(RequestError("quota_exceeded"))


def _bearer(metadata: Any) -> str | None:
    for name, value in metadata or ():
        if name == "authorization" and isinstance(value, str):
            if value[: len(_BEARER)].lower() == _BEARER:
                return value[len(_BEARER) :].strip()
    return None


def _behavior_name(handler: Handler) -> str:
    streaming = (handler.request_streaming, handler.response_streaming)
    return {
        (False, False): "unary_unary",
        (False, True): "unary_stream",
        (True, False): "stream_unary",
        (True, True): "stream_stream",
    }[streaming]


def _replace(handler: Handler, behavior: Callable[..., Any]) -> Handler:
    return handler._replace(**{_behavior_name(handler): behavior})  # type: ignore[attr-defined]


def _as_caller(handler: Handler, caller: access.Caller) -> Handler:
    """The handler, run with ``caller`` as the current caller."""
    inner = getattr(handler, _behavior_name(handler))
    if handler.response_streaming:

        async def stream(request: Any, context: Context) -> Any:
            token = access.use(caller)
            try:
                async for item in inner(request, context):
                    yield item
            finally:
                access.restore(token)

        return _replace(handler, stream)

    async def unary(request: Any, context: Context) -> Any:
        token = access.use(caller)
        try:
            return await inner(request, context)
        finally:
            access.restore(token)

    return _replace(handler, unary)


def _refusal(handler: Handler, code: grpc.StatusCode, details: str) -> Handler:
    async def refuse(request: Any, context: Context) -> None:
        oplog.refused("rpc", _REFUSAL_CODES.get(code, code.name.lower()), details)
        await context.abort(code, details)

    return _replace(handler, refuse)


_REFUSAL_CODES = {
    grpc.StatusCode.UNAUTHENTICATED: "bad_credentials",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "too_many_requests",
    grpc.StatusCode.PERMISSION_DENIED: "access_denied",
}


async def _chain(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    yield first
    async for item in rest:
        yield item


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, keys: KeyCache, limiter: RateLimiter, jobs: JobQuota) -> None:
        self.keys = keys
        self.limiter = limiter
        self.jobs = jobs

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(details)
        method: str = details.method  # type: ignore[attr-defined]
        if handler is None or not method.startswith(GUARDED_PREFIX):
            return handler
        snapshot = await self.keys.current()
        if not snapshot.enabled:
            return handler
        secret = _bearer(details.invocation_metadata)  # type: ignore[attr-defined]
        key = snapshot.find(secret) if secret else None
        if key is None:
            reason = "invalid or revoked API key" if secret else "missing API key"
            return _refusal(handler, grpc.StatusCode.UNAUTHENTICATED, reason)
        if not self.limiter.allow(key.id, key.rate_per_second):
            return _refusal(
                handler,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"rate limit of key {key.id} ({key.rate_per_second:g}/s) reached; retry later",
            )
        if method == CREATE_STATE:
            handler = _replace(handler, self._create_state(handler.stream_stream, key))
        elif method == CREATE_STATE_UNARY:
            handler = _replace(handler, self._create_state_unary(handler.unary_unary, key))
        elif method == UPLOAD_STATE:
            handler = _replace(handler, _upload_state(handler.stream_unary, key))
        elif method == GET_MODELS:
            handler = _replace(handler, _get_models(handler.unary_unary, key))
        elif method.startswith(MODEL_SERVICE):
            handler = _replace(handler, _model_scoped(handler, key))
        return _as_caller(handler, access.Caller.of_key(key))

    def _create_state(self, inner: Callable[..., Any], key: ApiKey) -> Callable[..., Any]:
        async def create_state(requests: AsyncIterator[Any], context: Context) -> Any:
            first = await anext(requests, None)
            if first is None:
                async for event in inner(requests, context):
                    yield event
                return
            await _check_models(key, first, context)
            if not self.jobs.try_enter(key):
                response = model_pb2.CreateStateResponse(error=_quota_error())
                yield model_pb2.CreateStateEvent(response=response)
                return
            accepted = False
            try:
                async for event in inner(_chain(first, requests), context):
                    if not accepted and event.WhichOneof("event") == "accepted_state_id":
                        self.jobs.accepted(key.id, event.accepted_state_id)
                        accepted = True
                    yield event
            finally:
                if not accepted:
                    self.jobs.left(key.id)

        return create_state

    def _create_state_unary(self, inner: Callable[..., Any], key: ApiKey) -> Callable[..., Any]:
        """The checks of ``_create_state`` for the one-message form; the servicer tells the
        accepted state id through ``on_accepted``."""

        async def create_state_unary(request: Any, context: Context) -> Any:
            await _check_models(key, model_pb2.CreateStateRequest(header=request.header), context)
            if not self.jobs.try_enter(key):
                return model_pb2.CreateStateResponse(error=_quota_error())
            accepted = False

            def tell(state_id: str) -> None:
                nonlocal accepted
                if not accepted:
                    self.jobs.accepted(key.id, state_id)
                    accepted = True

            token = on_accepted.set(tell)
            try:
                return await inner(request, context)
            finally:
                on_accepted.reset(token)
                if not accepted:
                    self.jobs.left(key.id)

        return create_state_unary


def _upload_state(inner: Callable[..., Any], key: ApiKey) -> Callable[..., Any]:
    async def upload_state(requests: AsyncIterator[Any], context: Context) -> Any:
        first = await anext(requests, None)
        if first is None:
            return await inner(requests, context)
        await _check_models(key, first, context)
        return await inner(_chain(first, requests), context)

    return upload_state


async def _check_models(key: ApiKey, request: Any, context: Context) -> None:
    model = denied_model(key, request)
    if model is not None:
        await context.abort(
            grpc.StatusCode.PERMISSION_DENIED, f"key {key.id} may not use model {model!r}"
        )


def _get_models(inner: Callable[..., Any], key: ApiKey) -> Callable[..., Any]:
    async def get_models(request: model_pb2.GetModelsRequest, context: Context) -> Any:
        empty = restrict_get_models(key, request)
        return empty if empty is not None else await inner(request, context)

    return get_models


def _model_scoped(handler: Handler, key: ApiKey) -> Callable[..., Any]:
    if handler.response_streaming:
        inner_stream = handler.unary_stream

        async def stream(request: Any, context: Context) -> Any:
            await _check_models(key, request, context)
            async for item in inner_stream(request, context):
                yield item

        return stream
    inner = handler.unary_unary

    async def unary(request: Any, context: Context) -> Any:
        await _check_models(key, request, context)
        return await inner(request, context)

    return unary


def auth_interceptor(db: Database, jobs: JobManager) -> AuthInterceptor:
    """The interceptor for a daemon whose keys live in ``db`` and whose jobs ``jobs`` runs."""

    def is_running(state_id: str) -> bool:
        job = jobs.jobs.get(state_id)
        return job is not None and not job.response.done()

    return AuthInterceptor(KeyCache(KeyStore(db)), RateLimiter(), JobQuota(is_running))


def named_models(request: Message) -> list[str]:
    """The model ids a Model-service request names (its header's, for streamed requests)."""
    if isinstance(request, model_pb2.CreateStateRequest | model_pb2.UploadStateRequest):
        if request.WhichOneof("part") != "header":
            return []
        header = request.header
        return [header.model_id, *(m.model_id for m in header.mount_models)]
    model_id = getattr(request, "model_id", None)
    return [model_id] if isinstance(model_id, str) else []


def denied_model(key: ApiKey, request: Message) -> str | None:
    """The first named model the key may not use, or None when it may use them all."""
    return next((m for m in named_models(request) if not key.may_use(m)), None)


def restrict_get_models(
    key: ApiKey, request: model_pb2.GetModelsRequest
) -> model_pb2.GetModelsResponse | None:
    """Narrow a getModels request to the key's models, in place. Returns the (empty) answer
    when the key may see none of the asked models, since an empty ``ids`` means "all"."""
    if key.models is None:
        return None
    wanted = set(request.ids) if request.ids else set(key.models)
    visible = sorted(wanted & key.models)
    if not visible:
        return model_pb2.GetModelsResponse(
            result=model_pb2.GetModelsResponse.Result(
                total=0, offset=request.offset, limit=request.limit or 20
            )
        )
    request.ClearField("ids")
    request.ids.extend(visible)
    return None
