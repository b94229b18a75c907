"""The platform's native HTTP API (PLATFORM-HTTP.md): the platform's own clients, pointed at
``launcher serve --http HOST:PORT``, call the same services as gRPC clients do."""

from launcher.http.bridge import Bridge
from launcher.http.call import Call, Reply, Services
from launcher.http.server import HttpApi

__all__ = ["Bridge", "Call", "HttpApi", "Reply", "Services"]
