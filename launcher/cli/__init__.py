"""The ``launcher`` command: ``serve`` runs the daemon; the other subcommands call its API.

Exit codes: 0 success, 1 an error or failed outcome, 2 usage error, 3 transport failure.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import metadata

from launcher.cli import commands as _cli_commands
from launcher.cli import create as _cli_create
from launcher.cli import keys as _cli_keys
from launcher.cli import logs as _cli_logs
from launcher.cli import run_job as _cli_run_job
from launcher.cli import serve as _cli_serve
from launcher.cli.output import dumps, exit_code
from launcher.client import LauncherClient, LauncherConnectionError

DEFAULT_ADDRESS = "127.0.0.1:50051"
EXIT_USAGE = 2
EXIT_TRANSPORT = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="launcher", description="Run the launcher daemon, or call its API."
    )
    parser.add_argument(
        "--address",
        default=os.environ.get("LAUNCHER_ADDRESS", DEFAULT_ADDRESS),
        help="unix:///path.sock, unix:relative.sock or HOST:PORT "
        f"(default: $LAUNCHER_ADDRESS or {DEFAULT_ADDRESS})",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("LAUNCHER_API_KEY"),
        help="API key sent with every call (default: $LAUNCHER_API_KEY)",
    )
    parser.add_argument(
        "--tls-ca",
        metavar="PEM",
        help="talk TLS to the launcher, trusting this CA certificate",
    )
    parser.add_argument("--client-cert", metavar="PEM", help="client certificate (mutual TLS)")
    parser.add_argument("--client-key", metavar="PEM", help="client certificate's key")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _cli_serve.add_parser(commands)
    _cli_keys.add_parser(commands)
    _cli_run_job.add_parser(commands)
    _cli_create.add_parser(commands)
    _cli_logs.add_parser(commands)
    _cli_commands.add_parsers(commands)
    parser.add_argument("--version", action="version", version=f"launcher {version()}")
    show_defaults(parser)
    return parser


def version() -> str:
    """This launcher's version (the installed package's)."""
    try:
        return metadata.version("launcher")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every option's default in its ``--help`` text, on this parser and all below it: an
    option without a default says ``none`` (a flag, an option whose help already names its
    default, or an empty list is left as is)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                show_defaults(sub)
            continue
        if not action.option_strings or action.nargs == 0 or action.default in ([], ""):
            continue
        if "default" in (action.help or "") or action.help == argparse.SUPPRESS:
            continue
        shown = "none" if action.default is None else "%(default)s"
        action.help = f"{action.help} (default: {shown})" if action.help else f"default: {shown}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        if args.command == "serve":
            return _cli_serve.run(args)
        if args.command == "keys":
            return _cli_keys.run(args)
        if args.command == "run-job":
            return _cli_run_job.run(args)
        if (args.client_cert or args.client_key) and not (
            args.client_cert and args.client_key and args.tls_ca
        ):
            raise argparse.ArgumentTypeError(
                "--client-cert and --client-key go together, with --tls-ca"
            )
        with LauncherClient(
            args.address,
            api_key=args.api_key,
            tls=args.tls_ca,
            client_cert=args.client_cert,
            client_key=args.client_key,
        ) as client:
            if args.handler is None:
                return int(args.run(client, args))
            response = args.handler(client, args)
            print(dumps(response))
            return exit_code(response)
    except argparse.ArgumentTypeError as exc:
        parser.print_usage(sys.stderr)
        print(f"launcher: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LauncherConnectionError as exc:
        print(f"launcher: cannot complete the call to {args.address}: {exc}", file=sys.stderr)
        return EXIT_TRANSPORT
    except OSError as exc:  # a local file problem (reading params, writing a download, ...)
        where = f": {exc.filename}" if exc.filename else ""
        print(f"launcher: error{where}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
