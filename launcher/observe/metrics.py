"""Prometheus metrics of one launcher (``GET /metrics``), names prefixed ``launcher_``.

Counters and histograms move by the jobs ended (``JobObserver``) when they are read (a job
only queues its figures); the gauges are read at scrape time from the parts that know them
(job manager, sessions, GPUs, sandbox, store), so nothing on a job's path pays for them.
Labels are bounded: outcome codes, launcher type, phase, sandbox layer, tenant (capped), and
model ids only with ``per_model``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("launcher.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Seconds: from a warm call (~ms) to the longest phase a model may ask for.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600)
#: At most this many tenants get their own stored-bytes series.
MAX_TENANTS = 1000
#: Ended jobs counted but not yet in the series (``job_ended``) at most.
MAX_PENDING = 1024
#: Label sets whose series are kept at hand (bounded: per-model labels could be many).
MAX_CACHED_LABEL_SETS = 4096


@dataclass
class Sources:
    """Where the gauges come from, each a callable read at scrape time."""

    load: Callable[[], tuple[int, int]] = lambda: (0, 0)  # (running, queued)
    warm_sessions: Callable[[], int] = lambda: 0
    gpus_in_use: Callable[[], int] = lambda: 0
    layers: Callable[[], dict[str, str]] = dict
    stored_bytes: Callable[[], dict[str, int]] = dict  # tenant -> bytes
    extra: list[Callable[[], Iterable[Metric]]] = field(default_factory=list)


class _Gauges(Collector):
    def __init__(self, sources: Sources) -> None:
        self.sources = sources

    def collect(self) -> Iterable[Metric]:
        running, queued = self.sources.load()
        warm = self.sources.warm_sessions()
        for name, doc, value in (
            ("launcher_jobs_running", "Jobs running now.", running),
            ("launcher_jobs_queued", "Jobs accepted and waiting for a slot.", queued),
            ("launcher_warm_sessions", "Idle warm sessions of persistent launchers.", warm),
            ("launcher_workers", "Live worker processes (running jobs and warm).", running + warm),
            ("launcher_gpus_in_use", "GPUs assigned to workers now.", self.sources.gpus_in_use()),
        ):
            yield GaugeMetricFamily(name, doc, value=value)
        layers = GaugeMetricFamily(
            "launcher_sandbox_layer", "Each sandbox layer: 1 on, 0 off.", labels=["layer"]
        )
        for layer, state in sorted(self.sources.layers().items()):
            layers.add_metric([layer], 1.0 if str(state).startswith("on") else 0.0)
        yield layers
        stored = GaugeMetricFamily(
            "launcher_stored_bytes", "Bytes each tenant stores.", labels=["tenant"]
        )
        try:
            by_tenant = self.sources.stored_bytes()
        except Exception:  # a scrape must not fail for one source
            log.exception("stored bytes could not be read for /metrics")
            by_tenant = {}
        for tenant, size in sorted(by_tenant.items())[:MAX_TENANTS]:
            stored.add_metric([tenant], float(size))
        yield stored
        info = InfoMetricFamily("launcher_build", "The launcher's version.")
        info.add_metric([], {"version": _version()})
        yield info
        for extra in self.sources.extra:
            yield from extra()


def _version() -> str:
    try:
        return metadata.version("launcher")
    except metadata.PackageNotFoundError:
        return "unknown"


class Metrics:
    """One launcher's metrics in their own registry (not the process-global one)."""

    def __init__(self, sources: Sources | None = None, per_model: bool = False) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.per_model = per_model
        self.sources = sources or Sources()
        labels = ["outcome", "launcher", *(["model"] if per_model else [])]
        self.jobs = Counter(
            "launcher_jobs", "Jobs ended, by outcome code.", labels, registry=self.registry
        )
        self.phase_seconds = Histogram(
            "launcher_phase_duration_seconds",
            "Each phase's duration.",
            ["phase", "launcher"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.job_seconds = Histogram(
            "launcher_job_duration_seconds",
            "A job's total duration, from acceptance to its outcome.",
            ["launcher"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.ingested = Counter(
            "launcher_ingested_bytes",
            "Param bytes received by createState.",
            registry=self.registry,
        )
        self.persisted = Counter(
            "launcher_persisted_bytes", "State bytes committed by jobs.", registry=self.registry
        )
        self.refused = Counter(
            "launcher_refused_requests",
            "createState requests refused before a job was accepted, by error code.",
            ["code"],
            registry=self.registry,
        )
        self.registry.register(_Gauges(self.sources))
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._pending: list[tuple[str, str, str, dict[str, float], float, int]] = []
        self._lock = threading.Lock()
        self._applying = threading.Lock()

    def job_ended(
        self,
        code: str,
        launcher: str,
        model_id: str,
        phases: dict[str, float],
        total: float,
        persisted: int,
    ) -> None:
        """Count an ended job. The series move when they are next read (``render``), or once
        ``MAX_PENDING`` jobs wait: a job pays one list append, a scrape sees every job."""
        with self._lock:
            self._pending.append((code, launcher, model_id, phases, total, persisted))
            waiting = len(self._pending)
        if waiting >= MAX_PENDING:
            self.apply_pending()

    def apply_pending(self) -> None:
        """Move the series by the jobs counted since the last time (any thread)."""
        with self._applying:  # (one at a time: the series move in the jobs' order)
            with self._lock:
                pending, self._pending = self._pending, []
            for code, launcher, model_id, phases, total, persisted in pending:
                self._apply(code, launcher, model_id, phases, total, persisted)

    def _apply(
        self,
        code: str,
        launcher: str,
        model_id: str,
        phases: dict[str, float],
        total: float,
        persisted: int,
    ) -> None:
        key = (code, launcher, model_id if self.per_model else "")
        children = self._children.get(key)
        if children is None:  # the labelled series, looked up once per label set
            labels = [code, launcher, *([model_id] if self.per_model else [])]
            children = (self.jobs.labels(*labels), self.job_seconds.labels(launcher))
            if len(self._children) < MAX_CACHED_LABEL_SETS:
                self._children[key] = children
        children[0].inc()
        for phase, seconds in phases.items():
            self.phase_seconds.labels(phase, launcher).observe(seconds)
        children[1].observe(total)
        if persisted:
            self.persisted.inc(persisted)

    def render(self) -> bytes:
        self.apply_pending()
        return generate_latest(self.registry)

    async def render_async(self) -> bytes:
        """The exposition text, made off the event loop (gauges may read the database)."""
        return await asyncio.to_thread(self.render)
