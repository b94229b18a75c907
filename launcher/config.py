"""Options of ``launcher serve``: what the command line hands to ``launcher.server.run_server``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class ServeOptions:
    """How one launcher daemon runs: its data root, where it listens, how much work it takes."""

    root: Path
    listen: list[str]
    max_concurrent_jobs: int = 4
    max_queued_jobs: int = 64
    sandbox_disable: frozenset[str] = frozenset()
    allow_public: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    #: How long SIGTERM lets running jobs finish before they end as launcher_terminated.
    drain_seconds: float = 30.0
    #: Persistent launchers: an idle warm session is stopped after this many seconds.
    session_idle_seconds: float = 300.0
    #: Persistent launchers: at most this many idle warm sessions each.
    max_idle_sessions: int = 4
    #: A stand-in GPU inventory ("0:H100,1:H100") for testing GPU accounting without GPUs.
    fake_gpus: str | None = None
    log_level: str = "info"
    #: ``HOST:PORT`` of the platform's HTTP API (``--http``); None: not served.
    http: str | None = None
