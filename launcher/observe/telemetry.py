"""Wiring of job logs, the operator's job lines and metrics into a launcher being built.

``install`` is called by ``launcher.server.start_launcher`` once the job manager and the
servicers exist; ``GET /metrics`` is served on the platform HTTP listener (``--http``) when
there is one, and on its own small listener with ``--metrics HOST:PORT`` (the two may be the
same address: then one listener serves both).
"""

from __future__ import annotations

import ipaddress
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from launcher.auth.owners import DEFAULT_TENANT
from launcher.auth.quotas import StoredBytes
from launcher.observe import oplog
from launcher.observe.jobs import JobObserver
from launcher.observe.metrics import CONTENT_TYPE, MAX_TENANTS, Metrics, Sources
from launcher.store.db import Database
from launcher.store.joblogs import JobLogs

log = logging.getLogger("launcher.metrics")


@dataclass
class Telemetry:
    logs: JobLogs
    metrics: Metrics
    observer: JobObserver
    metrics_runner: web.AppRunner | None = None
    metrics_address: str | None = None

    def route(self) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """The aiohttp handler of ``GET /metrics``."""
        metrics = self.metrics
        observer = self.observer

        async def serve_metrics(request: web.Request) -> web.StreamResponse:
            observer.settle()  # the jobs that have just ended are counted
            body = await metrics.render_async()
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

        return serve_metrics

    async def start_metrics(self, host: str, port: int) -> str:
        """Serve ``GET /metrics`` alone on ``host:port``; returns the bound ``host:port``."""
        app = web.Application()
        app.router.add_get("/metrics", self.route())
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self.metrics_runner = runner
        bound = runner.addresses[0][1] if runner.addresses else port
        self.metrics_address = f"{host}:{bound}"
        return self.metrics_address

    async def close(self) -> None:
        await self.observer.close()
        await self.logs.aclose()
        if self.metrics_runner is not None:
            await self.metrics_runner.cleanup()
            self.metrics_runner = None


def check_metrics_address(address: str, allow_public: bool) -> None:
    """``--metrics``: plain HTTP without keys, so loopback only unless ``--allow-public``."""
    host = address.rpartition(":")[0].strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not allow_public:
        raise SystemExit(
            f"refusing to serve metrics on {address}: not a loopback address, and /metrics has "
            "no TLS or keys; use a loopback address (scrape through a proxy) or --allow-public"
        )


def _stored_by_tenant(db: Database) -> Callable[[], dict[str, int]]:
    stored = StoredBytes(db)

    def by_tenant() -> dict[str, int]:
        try:
            rows = (
                db.connect()
                .execute(
                    "SELECT DISTINCT tenant FROM owners ORDER BY tenant LIMIT ?", (MAX_TENANTS,)
                )
                .fetchall()
            )
        except sqlite3.OperationalError:  # no tenants table yet: the one tenant
            rows = []
        tenants = {DEFAULT_TENANT, *(str(r[0]) for r in rows)}
        return {tenant: stored.of(tenant, with_job_logs=True) for tenant in tenants}

    return by_tenant


def install(
    root: Path,
    db: Database,
    jobs: Any,
    sessions: Any,
    executor: Any,
    model_servicer: Any,
    job_log_bytes: int,
    per_model: bool = False,
) -> Telemetry:
    """Job logs under ``<root>/logs/jobs``, metrics over the launcher's parts, the observer
    on ``jobs``, ``GetStateLogs`` on ``model_servicer``."""
    logs = JobLogs(root / "logs" / "jobs", job_log_bytes, db)
    gpus = getattr(executor, "gpus", None)
    sources = Sources(
        load=lambda: jobs.load,
        warm_sessions=sessions.idle_count,
        gpus_in_use=gpus.in_use if gpus is not None else (lambda: 0),
        layers=executor.layers,
        stored_bytes=_stored_by_tenant(db),
    )
    metrics = Metrics(sources, per_model=per_model)
    observer = JobObserver(logs, metrics)
    jobs.observer = observer.accepted
    oplog.on_refused = lambda code: metrics.refused.labels(code).inc()
    model_servicer.job_logs = logs
    return Telemetry(logs, metrics, observer)
