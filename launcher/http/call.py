"""One platform HTTP call as the method handlers see it, and what they answer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher.errors import RequestError
from launcher.http.bridge import Bridge
from launcher.http.frame import RequestFrame
from launcher.store.models import ModelRegistry


@dataclass
class Services:
    """What the handlers reach: the in-process bridge to the servicers, and the model registry
    (read for the platform's Model fields that the gRPC answer does not carry)."""

    bridge: Bridge
    models: ModelRegistry
    #: Where blobs that must be reordered are spooled (the launcher's ``tmp`` folder).
    spool_dir: Path


@dataclass
class Call:
    frame: RequestFrame
    bearer: str | None
    services: Services

    @property
    def params(self) -> dict[str, Any]:
        return self.frame.params

    @property
    def bridge(self) -> Bridge:
        return self.services.bridge


#: A blob of a response: its length, then its bytes in pieces.
Blob = tuple[int, AsyncIterator[bytes]]


@dataclass
class Reply:
    """``{"result": ...}`` or ``{"error": ...}``, then blobs streamed after it."""

    body: dict[str, Any]
    blobs: AsyncIterator[Blob] | None = None
    #: Runs once the reply is written or abandoned (closes the readers behind ``blobs``).
    cleanup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def ok(result: dict[str, Any]) -> Reply:
    return Reply({"result": result})


def refused(error: RequestError) -> Reply:
    return Reply({"error": error.to_json()})


def answer(value: dict[str, Any], convert: Callable[[dict[str, Any]], dict[str, Any]]) -> Reply:
    """A seed dict ``{"result"}`` / ``{"error"}`` with its result converted."""
    if "error" in value:
        return Reply({"error": value["error"]})
    return ok(convert(value["result"]))


Handler = Callable[[Call], Awaitable[Reply]]
