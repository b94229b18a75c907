"""Starting the HTTP front door beside the gRPC server, on the servicers it already runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from launcher.http.bridge import Bridge
from launcher.http.call import Services
from launcher.http.server import HttpApi
from launcher.store.models import ModelRegistry


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) into its parts; ``SystemExit`` if malformed."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SystemExit(f"--http {address!r}: expected HOST:PORT, such as 127.0.0.1:8080")
    return host, int(port)


def http_api(
    servicers: dict[str, Any],
    interceptor: Any,
    models: ModelRegistry,
    spool_dir: Path,
    serving: Callable[[], bool],
    idle_seconds: float | None = None,
    max_in_flight: int | None = None,
) -> HttpApi:
    """The platform HTTP API over ``servicers`` (``{"Model": ..., "Dataset": ...,
    "PersistentLauncher": ...}``), every call passing through ``interceptor`` as on gRPC."""
    services = Services(Bridge(servicers, interceptor), models, spool_dir)
    return HttpApi(services, serving, idle_seconds, max_in_flight)
