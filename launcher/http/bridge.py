"""Calling the launcher's services in-process, for the HTTP front door.

The HTTP handlers call the very servicer objects the gRPC server runs (no loopback hop), and
through the same ``AuthInterceptor``: API keys, per-key model access, tenants, rate limits and
quotas are enforced by one piece of code for both front doors. An interceptor refusal (a gRPC
status) becomes the in-band error the gRPC client reports for it.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from launcher.errors import RequestError

#: The same mapping the Python client applies to a refused call's status.
_STATUS_CODES = {
    grpc.StatusCode.UNAUTHENTICATED: "bad_credentials",
    grpc.StatusCode.PERMISSION_DENIED: "access_denied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "too_many_requests",
}


class Refused(Exception):
    """The interceptor or a servicer aborted the call: an in-band error for HTTP."""

    def __init__(self, error: RequestError) -> None:
        super().__init__(error.describe())
        self.error = error


def _refusal(code: grpc.StatusCode, details: str) -> RequestError:
    """The platform's error for an aborted call: the code alone for the auth refusals (as the
    gRPC client reports them); a protocol abort is an ``invalid_parameter`` saying why."""
    mapped = _STATUS_CODES.get(code)
    if mapped is not None:
        return RequestError(mapped)
    return RequestError("invalid_parameter", parameterName="body", reason=details)


class LocalContext:
    """The parts of ``grpc.aio.ServicerContext`` the interceptor and servicers use."""

    def __init__(self, metadata: tuple[tuple[str, str], ...], peer: str) -> None:
        self._metadata = metadata
        self._peer = peer

    async def abort(self, code: grpc.StatusCode, details: str = "", *_: Any) -> None:
        raise Refused(_refusal(code, details))

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def set_code(self, code: grpc.StatusCode) -> None:
        pass

    def set_details(self, details: str) -> None:
        pass

    def cancelled(self) -> bool:
        return False

    def done(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None


@dataclass(frozen=True)
class _CallDetails:
    method: str
    invocation_metadata: tuple[tuple[str, str], ...]


_FACTORIES: dict[tuple[bool, bool], Callable[..., grpc.RpcMethodHandler]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}
_BEHAVIOURS = {
    (False, False): "unary_unary",
    (False, True): "unary_stream",
    (True, False): "stream_unary",
    (True, True): "stream_stream",
}


class Bridge:
    """Invokes ``servicers[service].Method`` as the gRPC server would, interceptor included."""

    def __init__(self, servicers: dict[str, Any], interceptor: Any) -> None:
        self._servicers = servicers
        self._interceptor = interceptor

    async def _behaviour(
        self, service: str, method: str, streaming: tuple[bool, bool], bearer: str | None
    ) -> tuple[Callable[..., Any], LocalContext]:
        metadata: tuple[tuple[str, str], ...] = ()
        if bearer is not None:
            metadata = (("authorization", bearer),)
        inner = getattr(self._servicers[service], method)
        handler = _FACTORIES[streaming](inner)

        async def continuation(_: Any) -> grpc.RpcMethodHandler:
            return handler

        details = _CallDetails(f"/launcher.v1.{service}/{method}", metadata)
        wrapped = await self._interceptor.intercept_service(continuation, details)
        return getattr(wrapped, _BEHAVIOURS[streaming]), LocalContext(metadata, "http")

    async def unary(self, service: str, method: str, request: Any, bearer: str | None) -> Any:
        behaviour, context = await self._behaviour(service, method, (False, False), bearer)
        return await behaviour(request, context)

    async def stream_in(
        self, service: str, method: str, requests: AsyncIterator[Any], bearer: str | None
    ) -> Any:
        behaviour, context = await self._behaviour(service, method, (True, False), bearer)
        return await behaviour(requests, context)

    async def stream_out(
        self, service: str, method: str, request: Any, bearer: str | None
    ) -> AsyncGenerator[Any, None]:
        behaviour, context = await self._behaviour(service, method, (False, True), bearer)
        async for item in _stream(behaviour(request, context)):
            yield item

    async def stream_both(
        self, service: str, method: str, requests: AsyncIterator[Any], bearer: str | None
    ) -> AsyncIterator[Any]:
        behaviour, context = await self._behaviour(service, method, (True, True), bearer)
        async for item in _stream(behaviour(requests, context)):
            yield item


async def _stream(answer: Any) -> AsyncIterator[Any]:
    """A streaming behaviour's items; a refusal is a plain coroutine (it aborts, or returns
    nothing), as grpc.aio allows for stream handlers."""
    if inspect.isawaitable(answer):
        value = await answer
        if value is not None:
            yield value
        return
    async for item in answer:
        yield item
