"""Transport of the client: the channel, call metadata and how gRPC status errors map.

API-level outcomes travel as values in the responses; a gRPC status error is transport
trouble and becomes ``LauncherConnectionError``, except the statuses that the auth
interceptors use, which become the seed's ``error`` values.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc

from launcher.errors import RequestError

T = TypeVar("T")

# Statuses that carry an API-level answer rather than transport trouble.
_STATUS_CODES = {
    grpc.StatusCode.UNAUTHENTICATED: "bad_credentials",
    grpc.StatusCode.PERMISSION_DENIED: "access_denied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "too_many_requests",
}


class LauncherConnectionError(Exception):
    """The call did not complete: no connection, the connection broke, or the deadline passed.

    As with the platform's client, the operation may or may not have taken effect.
    """

    def __init__(self, message: str, status: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.status = status


TlsOption = bool | str | os.PathLike[str] | None


def open_channel(
    address: str,
    tls: TlsOption,
    client_cert: str | os.PathLike[str] | None = None,
    client_key: str | os.PathLike[str] | None = None,
) -> grpc.Channel:
    """A channel to ``unix:///abs.sock``, ``unix:relative.sock`` or ``host:port``.

    ``tls``: None/False for plaintext, True for the system's root certificates, or the path of
    a PEM file of root certificates to trust. ``client_cert``/``client_key`` (PEM paths, both or
    neither) present a client certificate, for a launcher that requires mutual TLS.
    """
    if not isinstance(address, str) or not address.strip():
        raise ValueError("address must be a non-empty string such as 127.0.0.1:50051")
    if (client_cert is None) != (client_key is None):
        raise ValueError("client_cert and client_key go together")
    if tls is None or tls is False:
        if client_cert is not None:
            raise ValueError("a client certificate needs tls (True or a root certificate path)")
        return grpc.insecure_channel(address)
    roots = None if tls is True else Path(tls).read_bytes()
    key = Path(client_key).read_bytes() if client_key is not None else None
    cert = Path(client_cert).read_bytes() if client_cert is not None else None
    credentials = grpc.ssl_channel_credentials(
        root_certificates=roots, private_key=key, certificate_chain=cert
    )
    return grpc.secure_channel(address, credentials)


class Caller:
    """Runs RPCs with the client's metadata and deadline, mapping status errors in one place."""

    def __init__(self, api_key: str | None, timeout: float | None) -> None:
        self.metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {api_key}"),) if api_key else ()
        )
        self.timeout = timeout

    def unary(self, method: Callable[..., T], request: Any) -> T | dict[str, Any]:
        """The response of a unary or client-streaming call; ``{"error"}`` for auth statuses."""
        try:
            return method(request, metadata=self.metadata, timeout=self.timeout)  # type: ignore[no-any-return]
        except grpc.RpcError as exc:
            return status_error(exc)

    def stream(self, method: Callable[..., Any], request: Any) -> Iterator[Any]:
        """The messages of a server-streaming call; status errors raise as for ``unary``."""
        responses = method(request, metadata=self.metadata, timeout=self.timeout)
        ended = False
        try:
            yield from responses
            ended = True
        except grpc.RpcError as exc:
            ended = True
            raise StatusAnswer(status_error(exc)) from exc
        finally:
            # Only a reader that stops early cancels: a cancel after the server's last message
            # would race the call's normal end and show up on the server as a cancelled RPC.
            if not ended:
                responses.cancel()


class StatusAnswer(Exception):
    """An auth status met in the middle of a stream: carries the ``{"error"}`` to return."""

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__(answer["error"]["code"])
        self.answer = answer


def status_error(exc: grpc.RpcError) -> dict[str, Any]:
    """``{"error": {"code"}}`` for an auth status; raises LauncherConnectionError otherwise."""
    code = exc.code() if isinstance(exc, grpc.Call) else None
    details = (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc)
    # A message over gRPC's size limit is RESOURCE_EXHAUSTED too, but it is not a rate limit.
    if code in _STATUS_CODES and "larger than max" not in details:
        return {"error": {"code": _STATUS_CODES[code]}}
    name = code.name if code is not None else "UNKNOWN"
    raise LauncherConnectionError(f"launcher call failed ({name}): {details}", code) from exc


def refused(err: RequestError) -> dict[str, Any]:
    """The ``{"error"}`` value for a request the client refuses before sending."""
    return {"error": err.to_json()}


def answering(method: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Turn refusals raised while building a request, and auth statuses met mid-stream, into
    the method's return value."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return method(*args, **kwargs)
        except RequestError as err:
            return refused(err)
        except StatusAnswer as answer:
            return answer.answer

    return wrapper
