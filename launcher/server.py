"""``launcher serve``: build stores, sandbox, job manager and gRPC server; run until stopped."""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psutil

from launcher import startup
from launcher.api import tenancy
from launcher.api.dataset import DatasetServicer
from launcher.api.grpc_server import Health, add_services
from launcher.api.intake import Intake, remove_spool_leftovers
from launcher.api.interceptor import auth_interceptor
from launcher.api.model import ModelServicer
from launcher.api.persistent import PersistentLauncherServicer
from launcher.auth.keys import KeyStore
from launcher.config import ServeOptions
from launcher.executors import Executor
from launcher.executors.make import make_executor
from launcher.executors.sessions import SessionPool
from launcher.http import HttpApi
from launcher.http.wiring import http_api, split_address
from launcher.jobs.manager import JobManager
from launcher.jobs.runner import JobRunner
from launcher.observe.logsetup import configure as configure_logging
from launcher.observe.telemetry import Telemetry, check_metrics_address
from launcher.observe.telemetry import install as install_telemetry
from launcher.store.datasets import DatasetStore
from launcher.store.db import Database, SchemaError
from launcher.store.jobs import JobRecords
from launcher.store.launchers import PersistentLaunchers
from launcher.store.models import ModelRegistry
from launcher.store.snapshots import SnapshotStore
from launcher.store.spool_files import SPOOL_FILES
from launcher.store.states import StateStore

log = logging.getLogger("launcher")


@dataclass
class Launcher:
    """The running daemon's parts, for the server and for tests that drive it in-process."""

    server: grpc.aio.Server
    jobs: JobManager
    executor: Executor
    sessions: SessionPool
    health: Health
    run_dir: Path
    addresses: list[str]
    #: The platform's HTTP API (``--http``), and the ``host:port`` it is bound to.
    http: HttpApi | None = None
    http_address: str | None = None
    #: Job logs, the operator's job lines and metrics (``--metrics`` listener, if any).
    telemetry: Telemetry | None = None
    #: The flock on the data root (``launcher.startup.lock_root``), released by ``stop``.
    root_lock: int | None = None

    async def stop(self, drain: float) -> None:
        self.jobs.stop_accepting()  # before health says so: no job slips in between
        await self.health.set_serving(False)
        await self.jobs.drain(drain)
        await self.sessions.close()
        if self.http is not None:
            await self.http.stop()
        if self.telemetry is not None:
            await self.telemetry.close()
        await self.server.stop(grace=2)
        await self.executor.close()
        await _remove_run_dir(self.run_dir)
        if self.root_lock is not None:
            os.close(self.root_lock)
            self.root_lock = None


async def _remove_run_dir(run_dir: Path) -> None:
    """Remove the run folder; a sandbox process killed a moment ago may still be making a
    directory there, so try again for a little while (up to 1 s)."""
    for _ in range(20):
        shutil.rmtree(run_dir, ignore_errors=True)
        if not run_dir.exists():
            return
        await asyncio.sleep(0.05)
    log.warning("the run folder %s could not be removed entirely", run_dir)


def _check_listen(address: str, options: ServeOptions, keys_exist: bool) -> None:
    if address.startswith("unix:"):
        return
    host = address.rsplit(":", 1)[0].strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback or options.allow_public:
        return
    missing = [
        what
        for what, present in (("TLS", options.tls_cert is not None), ("API keys", keys_exist))
        if not present
    ]
    if missing:
        raise SystemExit(
            f"refusing to listen on {address}: not a loopback address and no "
            f"{' and no '.join(missing)}; pass --tls-cert/--tls-key and create a key with "
            "`launcher keys create`, or pass --allow-public to accept the risk"
        )


def _add_port(
    server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None
) -> int:
    if not address.startswith("unix:"):
        if credentials is not None:
            return server.add_secure_port(address, credentials)
        return server.add_insecure_port(address)
    # The socket is bound here: owner-only from its creation, not after a later chmod.
    mask = os.umask(0o177)
    try:
        return server.add_insecure_port(address)
    finally:
        os.umask(mask)


#: The longest worker socket path below a run folder ("/w<n>/ipc.sock"), with room to spare.
_SOCKET_SUFFIX = len("/w0000000/ipc.sock")
#: Unix socket paths are limited to 107 bytes.
_SOCKET_PATH_MAX = 107


def _make_run_dir(root: Path) -> Path:
    """The folder of the workers' sockets and work folders: ``<root>/run`` (emptied first: what
    a crashed launcher left there), or, when that path is too long for a Unix socket, a fresh
    folder in the temporary folder, after removing those of launchers that no longer run."""
    run_dir = root / "run"
    if len(str(run_dir)) + _SOCKET_SUFFIX <= _SOCKET_PATH_MAX:
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(mode=0o711)
        os.chmod(run_dir, 0o711)
        return run_dir
    for stale in Path(tempfile.gettempdir()).glob("launcher-run-*"):
        pid = stale.name.split("-")[2]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"launcher-run-{os.getpid()}-"))
    os.chmod(run_dir, 0o711)
    return run_dir


def _credentials(options: ServeOptions) -> grpc.ServerCredentials | None:
    if options.tls_cert is None or options.tls_key is None:
        return None
    ca = options.tls_client_ca.read_bytes() if options.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(options.tls_key.read_bytes(), options.tls_cert.read_bytes())],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )


def _claim_root(options: ServeOptions) -> tuple[Path, int]:
    """The data root, locked for this process and private, with its listen addresses free;
    a ``StartupError`` (and nothing touched) when another launcher owns either."""
    os.umask(0o077)
    root = options.root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    lock = startup.lock_root(root)
    try:
        extra = [a for a in (options.http, options.metrics) if a]
        for address in [*options.listen, *dict.fromkeys(extra)]:
            startup.check_address_free(address)
        startup.make_private(root)
        startup.raise_fd_limit()
        startup.check_database(root / "launcher.db")
    except BaseException:
        os.close(lock)
        raise
    return root, lock


async def start_launcher(options: ServeOptions) -> Launcher:
    root, root_lock = _claim_root(options)
    for sub in ("models", "states", "datasets", "tmp", "logs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    try:
        db = Database(root / "launcher.db")
    except (SchemaError, sqlite3.DatabaseError) as e:
        os.close(root_lock)
        raise startup.StartupError(f"{root / 'launcher.db'}: {e}") from None
    # Refuse an unsafe listen address before building anything that would need tearing down.
    keys_exist = await asyncio.to_thread(KeyStore(db).enabled)
    for address in [*options.listen, *([options.http] if options.http else [])]:
        _check_listen(address, options, keys_exist)
    if options.metrics is not None:
        check_metrics_address(options.metrics, options.allow_public)
    models = ModelRegistry(root / "models")
    states = StateStore(root, db)
    snapshots = SnapshotStore(root, db, states)
    records = JobRecords(db)
    datasets = DatasetStore(root, db)
    launchers = PersistentLaunchers(db)
    await asyncio.to_thread(states.reconcile)
    await asyncio.to_thread(snapshots.reconcile)
    lost = await asyncio.to_thread(records.reconcile, time.time())
    if lost:
        log.warning("%d jobs were lost with the previous launcher: launcher_terminated", lost)
    # Worker sockets live in a short private folder (Unix socket paths are limited to 108 bytes).
    run_dir = _make_run_dir(root)
    executor = await make_executor(options, root, run_dir)
    sessions = SessionPool(
        lambda worker: executor.stop(worker, "session"),
        idle_timeout=options.session_idle_seconds,
        max_idle=options.max_idle_sessions,
    )
    runner = JobRunner(executor, states, sessions)
    jobs = JobManager(
        runner,
        records,
        states.new_state_id,
        options.max_concurrent_jobs,
        options.max_queued_jobs,
        options.jobs_per_tenant(),
    )
    remove_spool_leftovers(root / "tmp")
    intake = Intake(
        models, states, datasets, launchers, root / "tmp", snapshots, executor, options.intake()
    )

    interceptor = auth_interceptor(db, jobs)
    server = grpc.aio.server(
        interceptors=[interceptor],
        # A second launcher must not share this port: no SO_REUSEPORT.
        options=[("grpc.so_reuseport", 0)],
        maximum_concurrent_rpcs=options.max_concurrent_rpcs,
    )
    launcher_servicer = PersistentLauncherServicer(launchers, jobs, executor, sessions, root)
    servicers: dict[str, Any] = {
        "Model": ModelServicer(intake, jobs, records, models, states=states, snapshots=snapshots),
        "Dataset": DatasetServicer(datasets),
        "PersistentLauncher": launcher_servicer,
    }
    tenancy.install(db, servicers, jobs, states, options.max_phase_seconds)
    await launcher_servicer.start_sampling()
    telemetry = (
        install_telemetry(
            root,
            db,
            jobs,
            sessions,
            executor,
            servicers["Model"],
            options.job_log_bytes,
            options.metrics_per_model,
        )
        if options.observability
        else None
    )
    health_checks = add_services(server, servicers)
    credentials = _credentials(options)
    addresses = []
    for address in options.listen:
        try:
            port = _add_port(server, address, credentials)
        except RuntimeError as e:  # grpc: "Failed to bind to address"
            raise startup.StartupError(f"cannot listen on {address}: {e}") from None
        if address.startswith("unix:"):
            addresses.append(address)
        else:
            addresses.append(f"{address.rsplit(':', 1)[0]}:{port}")
    await server.start()
    await health_checks.set_serving(True)
    launcher = Launcher(
        server, jobs, executor, sessions, health_checks, run_dir, addresses, root_lock=root_lock
    )
    launcher.telemetry = telemetry
    if options.http is not None:
        # The platform's HTTP API: the same servicers, behind the same interceptor.
        launcher.http = http_api(
            servicers,
            interceptor,
            models,
            root / "tmp",
            lambda: jobs.accepting,
            options.intake_idle_seconds,
            options.max_concurrent_rpcs,
        )
        if telemetry is not None:
            launcher.http.add_route("GET", "/metrics", telemetry.route())
        launcher.http_address = await launcher.http.start(*split_address(options.http))
    if telemetry is not None and options.metrics is not None and options.metrics != options.http:
        await telemetry.start_metrics(*split_address(options.metrics))
    return launcher


def _command_name() -> str:
    """How to call this launcher's CLI from here (the virtual environment's script if any)."""
    script = Path(sys.executable).parent / "launcher"
    if not script.exists():
        return "launcher"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def _try_hint(models_dir: Path) -> str | None:
    """A command to try against this root: createState of a model it has (``hello`` when
    present), or none when it has no model."""
    ids = ModelRegistry(models_dir).list_ids()
    if not ids:
        return None
    model_id = "hello" if "hello" in ids else ids[0]
    return f"create-state {model_id} --name first"


async def _serve(options: ServeOptions) -> int:
    launcher = await start_launcher(options)
    for address in launcher.addresses:
        log.info("listening on %s", address)
        print(f"launcher listening on {address}", flush=True)
    if launcher.http_address is not None:
        log.info("platform HTTP API on http://%s/v0", launcher.http_address)
        print(f"launcher HTTP API on http://{launcher.http_address}/v0", flush=True)
    metrics_at = launcher.http_address or None
    if launcher.telemetry is not None and launcher.telemetry.metrics_address is not None:
        metrics_at = launcher.telemetry.metrics_address
    if metrics_at is not None:
        log.info("metrics on http://%s/metrics", metrics_at)
        print(f"launcher metrics on http://{metrics_at}/metrics", flush=True)
    hint = _try_hint(options.root.resolve() / "models")
    if hint is not None:
        print(
            f"try, in another terminal: {_command_name()} --address {launcher.addresses[0]} {hint}",
            flush=True,
        )
    # What start-up made (modules, the servers, the registries: ~60k objects) lives as long as
    # the launcher: kept out of the collector's full passes, each ~35 ms -> ~4 ms (a pause
    # every job arriving meanwhile waits out).
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: draining running jobs (up to %.0f s)", options.drain_seconds)
    await launcher.stop(options.drain_seconds)
    SPOOL_FILES.clear()
    return 0


#: How long a thread holding the GIL (intake validation of a big upload) may keep the event
#: loop and other calls' threads waiting for it: a fifth of CPython's default 5 ms, since a
#: cheap call needs the GIL back many times and waits up to this long each time.
GIL_SWITCH_SECONDS = 0.001


def run_server(options: ServeOptions) -> int:
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    configure_logging(options.log_level, options.log_format, options.log_libraries)
    return asyncio.run(_serve(options))
