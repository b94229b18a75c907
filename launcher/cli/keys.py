"""``launcher keys create|list|revoke|delete``: operator commands on a data root's API keys.

They open ``<root>/launcher.db`` directly (no daemon needed); a running daemon sees the
change within a second. ``create`` prints the key once: only its hash is stored. Every key
belongs to a tenant (``--tenant``, default: the key's name); ``--admin`` keys see every
tenant's objects. ``revoke`` keeps the key's row (authentication stays on); ``delete``
removes it, and ``delete --all`` removes every key: the way back to a launcher without keys.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from launcher.auth.keys import KeyStore, parse_models
from launcher.auth.limits import parse_rate
from launcher.cli.serve import DEFAULT_ROOT
from launcher.store.db import Database

EXIT_USAGE = 2


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("keys", help="manage API keys of a data root (operator)")
    actions = p.add_subparsers(dest="keys_action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key and print it once")
    create.add_argument("name")
    create.add_argument(
        "--models", default="*", metavar="A,B|*", help="models the key may use (default: all)"
    )
    create.add_argument("--rate", metavar="N/s", help="request rate limit (N/s, N/min, N/h)")
    create.add_argument("--max-stored-bytes", type=int, metavar="B")
    create.add_argument("--max-concurrent-jobs", type=int, metavar="N")
    create.add_argument(
        "--tenant", metavar="T", help="the tenant the key belongs to (default: its name)"
    )
    create.add_argument(
        "--admin", action="store_true", help="the key sees and uses every tenant's objects"
    )
    actions.add_parser("list", help="list keys (never their secrets)")
    revoke = actions.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id", metavar="ID")
    delete = actions.add_parser(
        "delete", help="delete a key by its id (--all: every key, back to no authentication)"
    )
    target = delete.add_mutually_exclusive_group(required=True)
    target.add_argument("key_id", metavar="ID", nargs="?")
    target.add_argument("--all", action="store_true", help="delete every key")
    for sub in (create, actions.choices["list"], revoke, delete):
        sub.add_argument("--root", type=Path, default=Path(DEFAULT_ROOT), help="data root")


def run(args: argparse.Namespace) -> int:
    db_path = args.root / "launcher.db"
    if args.keys_action != "create" and not db_path.is_file():
        print(f"launcher: error: no launcher data root at {args.root}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.keys_action == "create":
            models = parse_models(args.models)
            rate = None if args.rate is None else parse_rate(args.rate)
            args.root.mkdir(parents=True, exist_ok=True)
    except ValueError as exc:
        print(f"launcher: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    db = Database(db_path)
    try:
        store = KeyStore(db)
        if args.keys_action == "create":
            return _create(store, args, models, rate)
        if args.keys_action == "list":
            print(json.dumps([k.to_json() for k in store.list()], indent=2))
            return 0
        if args.keys_action == "delete" and args.all:
            count = store.delete_all()
            print(json.dumps({"deleted": count}))
            print("no key is left: the launcher needs none now", file=sys.stderr)
            return 0
        try:
            if args.keys_action == "delete":
                key = store.delete(args.key_id)
            else:
                key = store.revoke(args.key_id)
        except KeyError:
            print(f"launcher: error: no key with id {args.key_id!r}", file=sys.stderr)
            return 1
        print(json.dumps(key.to_json(), indent=2))
        return 0
    finally:
        db.close()


def _create(
    store: KeyStore, args: argparse.Namespace, models: frozenset[str] | None, rate: float | None
) -> int:
    try:
        key, secret = store.create(
            args.name,
            models=models,
            rate_per_second=rate,
            max_stored_bytes=args.max_stored_bytes,
            max_concurrent_jobs=args.max_concurrent_jobs,
            tenant=args.tenant,
            admin=args.admin,
        )
    except ValueError as exc:
        print(f"launcher: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps({**key.to_json(), "key": secret}, indent=2))
    print("store the key now: it is not shown again", file=sys.stderr)
    return 0
