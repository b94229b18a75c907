"""Options of ``launcher serve``: what the command line hands to ``launcher.server.run_server``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from launcher import rules
from launcher.jobs.caps import PhaseCaps
from launcher.rules import IntakeLimits


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
    max_idle_sessions: int = 8
    #: A stand-in GPU inventory ("0:H100,1:H100") for testing GPU accounting without GPUs.
    fake_gpus: str | None = None
    log_level: str = "info"
    #: Where workers run: "local" (this machine's sandbox) or "ray" (``--ray-address``).
    executor: str = "local"
    #: The Ray cluster (``HOST:PORT`` of its GCS) for ``executor == "ray"``.
    ray_address: str | None = None
    #: ``HOST:PORT`` the relay listens on; nodes dial it (port 0: any free port).
    relay_listen: str = "127.0.0.1:0"
    #: On each Ray node: the folder of model bundles and worker folders.
    ray_node_dir: Path = Path("/var/tmp/launcher-node")
    #: TLS of the relay (nodes verify it against ``relay_tls_ca``, or the certificate itself).
    relay_tls_cert: Path | None = None
    relay_tls_key: Path | None = None
    relay_tls_ca: Path | None = None
    #: The operator log: "text" or "json" (one object per line); libraries' lines below
    #: warning only with ``log_libraries``.
    log_format: str = "text"
    log_libraries: bool = False
    #: The bound of each job's log in bytes (its first and last halves kept).
    job_log_bytes: int = 1024 * 1024
    #: ``HOST:PORT`` of a listener for ``GET /metrics`` alone (``--metrics``); with ``--http``
    #: the HTTP listener serves ``/metrics`` too.
    metrics: str | None = None
    #: Label job counters with the model id too (``--metrics-per-model``).
    metrics_per_model: bool = False
    #: Job logs, per-job operator lines and metrics at all (``--observability off``: none,
    #: for measuring what they cost).
    observability: bool = True
    #: ``HOST:PORT`` of the platform's HTTP API (``--http``); None: not served.
    http: str | None = None
    #: Caps on the phase limits model.toml asks for (``--max-phase-seconds``); None: none.
    max_phase_seconds: PhaseCaps | None = None
    #: At most this many running jobs per tenant (``--max-jobs-per-tenant``); None: the
    #: default, half of ``max_concurrent_jobs`` (at least 1). A launcher without keys has one
    #: tenant, never capped.
    max_jobs_per_tenant: int | None = None

    #: Intake bounds (``launcher.api.intake.IntakeLimits``; defaults in ``launcher.rules``).
    intake_idle_seconds: float = rules.DEFAULT_INTAKE_IDLE_SECONDS
    max_request_bytes: int = rules.DEFAULT_MAX_REQUEST_BYTES
    max_tensors_per_param: int = rules.DEFAULT_MAX_TENSORS_PER_PARAM
    max_concurrent_intakes: int = rules.DEFAULT_MAX_CONCURRENT_INTAKES
    max_tenant_intakes: int = rules.DEFAULT_MAX_TENANT_INTAKES
    #: gRPC ``maximum_concurrent_rpcs``: calls past it are answered RESOURCE_EXHAUSTED.
    max_concurrent_rpcs: int = rules.DEFAULT_MAX_CONCURRENT_RPCS

    def intake(self) -> IntakeLimits:
        return IntakeLimits(
            idle_seconds=self.intake_idle_seconds,
            max_request_bytes=self.max_request_bytes,
            max_tensors_per_param=self.max_tensors_per_param,
            max_concurrent=self.max_concurrent_intakes,
            max_per_tenant=self.max_tenant_intakes,
        )

    def jobs_per_tenant(self) -> int:
        if self.max_jobs_per_tenant is not None:
            return self.max_jobs_per_tenant
        return max(1, self.max_concurrent_jobs // 2)
