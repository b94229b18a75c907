"""``launcher serve``: its flags, turned into ``ServeOptions`` for ``launcher.server``."""

from __future__ import annotations

import argparse
from pathlib import Path

from launcher.cli import bounds, tenants
from launcher.cli.args import csv
from launcher.config import ServeOptions

#: One default data root for every subcommand (serve, keys, ...), the one ``make run`` uses.
DEFAULT_ROOT = ".launcher-data"
DEFAULT_LISTEN = "127.0.0.1:50051"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("serve", help="run the launcher daemon")
    p.add_argument("--root", type=Path, default=Path(DEFAULT_ROOT), help="data root folder")
    p.add_argument(
        "--listen",
        action="append",
        metavar="ADDR",
        help=f"unix:///path.sock, unix:relative.sock or HOST:PORT (repeatable; default "
        f"{DEFAULT_LISTEN})",
    )
    p.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="also serve the platform's own HTTP API there, for the platform's clients "
        "(make run: 127.0.0.1:8080)",
    )
    p.add_argument("--max-concurrent-jobs", type=_positive, default=4, metavar="N")
    p.add_argument("--max-queued-jobs", type=_non_negative, default=64, metavar="M")
    p.add_argument(
        "--sandbox-disable",
        type=csv,
        default=[],
        metavar="LAYER,..",
        help="sandbox layers not to apply (names as reported by get-sysinfo)",
    )
    p.add_argument(
        "--allow-public", action="store_true", help="allow listening on non-loopback addresses"
    )
    p.add_argument("--tls-cert", type=Path, metavar="PEM")
    p.add_argument("--tls-key", type=Path, metavar="PEM")
    p.add_argument("--tls-client-ca", type=Path, metavar="PEM", help="require client certs")
    p.add_argument(
        "--session-idle-seconds",
        type=_non_negative_float,
        default=300.0,
        metavar="S",
        help="stop a persistent launcher's idle warm session after S seconds (default 300)",
    )
    p.add_argument(
        "--max-idle-sessions",
        type=_non_negative,
        default=8,
        metavar="N",
        help="idle warm sessions kept per persistent launcher (default 8; 0: never reuse)",
    )
    p.add_argument(
        "--fake-gpus",
        metavar="INDEX:MODEL,..",
        help="pretend these GPUs exist (for testing GPU accounting on a machine without GPUs)",
    )
    p.add_argument(
        "--drain-seconds",
        type=_non_negative_float,
        default=30.0,
        metavar="S",
        help="on SIGTERM, how long running jobs may finish before ending as launcher_terminated",
    )
    p.add_argument(
        "--executor",
        choices=["local", "ray"],
        default="local",
        help="where workers run: this machine (default) or the nodes of a Ray cluster",
    )
    p.add_argument("--ray-address", metavar="HOST:PORT", help="the Ray cluster (--executor ray)")
    p.add_argument(
        "--relay-listen",
        metavar="HOST:PORT",
        default="127.0.0.1:0",
        help="where Ray nodes dial this launcher's relay (--executor ray; default a free port)",
    )
    p.add_argument(
        "--ray-node-dir",
        type=Path,
        default=Path("/var/tmp/launcher-node"),
        metavar="DIR",
        help="on each Ray node, the folder of model bundles and worker folders",
    )
    p.add_argument("--relay-tls-cert", type=Path, metavar="PEM", help="TLS of the relay")
    p.add_argument("--relay-tls-key", type=Path, metavar="PEM")
    p.add_argument(
        "--relay-tls-ca",
        type=Path,
        metavar="PEM",
        help="the CA nodes verify the relay with (default: the relay certificate itself)",
    )
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    p.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="the operator log on stderr: text lines, or one JSON object per line",
    )
    p.add_argument(
        "--log-libraries",
        action="store_true",
        help="also show the libraries' (grpc, asyncio, aiohttp) lines below warning",
    )
    p.add_argument(
        "--job-log-bytes",
        type=_job_log_bytes,
        default=1024 * 1024,
        metavar="B",
        help="keep at most B bytes of each job's log: its first and last halves (default 1 MiB)",
    )
    p.add_argument(
        "--metrics",
        type=_host_port,
        metavar="HOST:PORT",
        help="serve Prometheus metrics at GET /metrics there (also on --http when given)",
    )
    p.add_argument(
        "--observability",
        choices=["on", "off"],
        default="on",
        help="off: no job logs, no per-job log lines, no metrics (to measure their cost)",
    )
    p.add_argument(
        "--metrics-per-model",
        action="store_true",
        help="label the job counters with the model id too (one series per model)",
    )
    bounds.add_arguments(p)
    tenants.add_arguments(p)


def _host_port(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host.strip("[]") or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(
            f"expected HOST:PORT, such as 127.0.0.1:9100, not {text!r}"
        )
    return text


def _job_log_bytes(text: str) -> int:
    value = _non_negative(text)
    if value < 64 * 1024:
        raise argparse.ArgumentTypeError(f"expected at least 65536 bytes, got {value}")
    return value


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected an integer of at least 1")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer of at least 0, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number of at least 0, got {text}")
    return value


def options(args: argparse.Namespace) -> ServeOptions:
    if (args.tls_cert is None) != (args.tls_key is None):
        raise argparse.ArgumentTypeError("--tls-cert and --tls-key go together")
    if (args.relay_tls_cert is None) != (args.relay_tls_key is None):
        raise argparse.ArgumentTypeError("--relay-tls-cert and --relay-tls-key go together")
    if args.tls_client_ca is not None and args.tls_cert is None:
        raise argparse.ArgumentTypeError("--tls-client-ca needs --tls-cert and --tls-key")
    return ServeOptions(
        root=args.root,
        listen=args.listen or [DEFAULT_LISTEN],
        max_concurrent_jobs=args.max_concurrent_jobs,
        max_queued_jobs=args.max_queued_jobs,
        sandbox_disable=frozenset(args.sandbox_disable),
        allow_public=args.allow_public,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        log_level=args.log_level,
        log_format=args.log_format,
        log_libraries=args.log_libraries,
        job_log_bytes=args.job_log_bytes,
        metrics=args.metrics,
        metrics_per_model=args.metrics_per_model,
        observability=args.observability == "on",
        drain_seconds=args.drain_seconds,
        session_idle_seconds=args.session_idle_seconds,
        max_idle_sessions=args.max_idle_sessions,
        fake_gpus=args.fake_gpus,
        http=args.http,
        executor=args.executor,
        ray_address=args.ray_address,
        relay_listen=args.relay_listen,
        ray_node_dir=args.ray_node_dir,
        relay_tls_cert=args.relay_tls_cert,
        relay_tls_key=args.relay_tls_key,
        relay_tls_ca=args.relay_tls_ca,
        **bounds.options(args),
        **tenants.options(args),
    )


def run(args: argparse.Namespace) -> int:
    serve_options = options(args)
    # Imported here so that the client commands work without the daemon's dependencies.
    from launcher.server import run_server

    return run_server(serve_options)
