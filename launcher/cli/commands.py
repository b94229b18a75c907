"""The command line's API subcommands: their arguments and the client call each makes.

Every handler takes ``(client, args)`` and returns the response dict, which ``launcher.cli``
prints as JSON. ``create-state`` is apart (``launcher.cli.create``): it shows phases live.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, TypeAlias

import numpy

from launcher.cli import args as parse
from launcher.client import LauncherClient

Handler = Callable[[LauncherClient, argparse.Namespace], dict[str, Any]]
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _command(commands: Commands, name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help)
    parser.set_defaults(handler=handler)
    return parser


def _paging(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--ids", type=parse.csv, metavar="ID,..")


def _ids_filter(args: argparse.Namespace) -> dict[str, Any] | None:
    return {"ids": args.ids} if args.ids else None


def _entries(
    client: LauncherClient, args: argparse.Namespace
) -> dict[str, int] | list[int] | tuple[dict[str, Any]]:
    """The selected entries; without ``--end``, up to the dataset's last entry (asked for
    first). A 1-tuple holds the error answer of that question."""
    if args.indexes is not None:
        if args.end is not None:
            raise argparse.ArgumentTypeError("--end goes with --start, not with --indexes")
        return list(args.indexes)
    if args.end is not None:
        return {"start": args.start, "end": args.end}
    found = client.dataset.get_datasets(filter={"ids": [args.dataset_id]})
    datasets = found.get("result", {}).get("datasets")
    if not datasets:
        return (found if "error" in found else {"error": {"code": "dataset_not_found"}},)
    return {"start": args.start, "end": max(args.start, int(datasets[0]["entries"]))}


def _selection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset_id", metavar="DATASET")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--start", type=int, help="first entry, included")
    group.add_argument("--indexes", type=parse.indexes, metavar="I,..")
    parser.add_argument("--end", type=int, help="entry after the last (default: to the end)")


def _model_state(commands: Commands, name: str, method: str, help: str) -> None:
    def handler(client: LauncherClient, args: argparse.Namespace) -> dict[str, Any]:
        call: Callable[..., dict[str, Any]] = getattr(client.model, method)
        return call(model_id=args.model_id, state_id=args.state_id)

    parser = _command(commands, name, handler, help)
    parser.add_argument("model_id", metavar="MODEL")
    parser.add_argument("state_id", metavar="STATE")


def _rows(path: str) -> list[Any]:
    """One tensor per first-axis row of a ``.npy`` array (views of a memory map)."""
    array = parse.load_file(path)
    if not isinstance(array, numpy.ndarray) or array.ndim == 0:
        raise argparse.ArgumentTypeError(f"{path}: expected a .npy array with at least 1 axis")
    return [array[i] for i in range(array.shape[0])]


def add_parsers(commands: Commands) -> None:
    p = _command(commands, "get-models", _get_models, "list models and their states")
    _paging(p)
    p.add_argument("--names", type=parse.csv, metavar="NAME,..")
    p.add_argument("--search", metavar="TEXT", help="models whose name contains TEXT")

    p = _command(commands, "get-model-state", _get_model_state, "download a state's keys")
    p.add_argument("model_id", metavar="MODEL")
    p.add_argument("--state", dest="state_id", help="default: the active state")
    p.add_argument("--keys", type=parse.csv, metavar="KEY,..", help="default: all keys")
    p.add_argument(
        "--out",
        required=True,
        type=parse.output_folder,
        metavar="DIR",
        help="folder for one file per key (created if missing)",
    )

    p = _command(commands, "upload-state", _upload_state, "store a state from files")
    p.add_argument("model_id", metavar="MODEL")
    p.add_argument("--name", required=True)
    p.add_argument("--key", type=parse.file_key, action="append", default=[], metavar="K=@FILE")
    p.add_argument(
        "--delete-states",
        type=parse.csv,
        default=[],
        metavar="ID,..",
        help="states to delete once this one is stored; the active state is refused "
        "(state_is_active) and then nothing is stored or deleted",
    )

    p = _command(commands, "rename-state", _rename_state, "rename a state")
    p.add_argument("model_id", metavar="MODEL")
    p.add_argument("state_id", metavar="STATE")
    p.add_argument("name", metavar="NAME")

    _model_state(commands, "activate-state", "set_active_model_state", "make a state active")
    _model_state(commands, "delete-state", "delete_model_state", "delete a state")
    _model_state(commands, "cancel-create-state", "cancel_create_state", "cancel a running job")
    _model_state(
        commands, "wait-for-state", "wait_for_state_to_be_created", "wait for a job's outcome"
    )

    p = _command(commands, "get-creating-states", _creating, "list running createState jobs")
    p.add_argument("model_id", metavar="MODEL")

    p = _command(commands, "snapshot-model", _snapshot, "snapshot a model and its active state")
    p.add_argument("model_id", metavar="MODEL")
    p.add_argument("--name", required=True)

    p = _command(commands, "delete-snapshot", _delete_snapshot, "delete a snapshot")
    p.add_argument("model_id", metavar="MODEL")
    p.add_argument("snapshot_id", metavar="SNAPSHOT")

    p = _command(commands, "create-dataset", _create_dataset, "create a dataset")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--description", default="")
    p.add_argument(
        "--key",
        type=parse.dataset_key,
        action="append",
        required=True,
        metavar="NAME[:required][:types=f32,..][:shape=-1,3]",
    )

    p = _command(commands, "add-entries", _add_entries, "add one entry per row of .npy arrays")
    p.add_argument("dataset_id", metavar="DATASET")
    p.add_argument("--key", type=parse.file_key, action="append", required=True, metavar="K=@NPY")

    p = _command(commands, "get-datasets", _get_datasets, "list datasets")
    _paging(p)

    p = _command(commands, "get-entries", _get_entries, "read entries")
    _selection(p)
    p = _command(commands, "remove-entries", _remove_entries, "remove entries")
    _selection(p)

    p = _command(commands, "delete-dataset", _delete_dataset, "delete a dataset")
    p.add_argument("dataset_id", metavar="DATASET")

    p = _command(
        commands, "create-persistent-launcher", _create_launcher, "create a persistent launcher"
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "spec",
        type=parse.launcher_spec,
        metavar="cpus=N,memory=MiB[,disk=MiB,swap=MiB,gpus=[MODEL:]N]",
        help="gpus=N: N GPUs of any model; gpus=MODEL:N: of that model",
    )

    p = _command(commands, "get-persistent-launchers", _get_launchers, "list persistent launchers")
    _paging(p)

    p = _command(commands, "get-sysinfo", _get_sysinfo, "resource samples of a launcher")
    p.add_argument("persistent_launcher_id", metavar="ID")
    p.add_argument("--from", dest="from_timestamp", type=int, metavar="MS")

    p = _command(
        commands, "delete-persistent-launcher", _delete_launcher, "delete a persistent launcher"
    )
    p.add_argument("persistent_launcher_id", metavar="ID")


def _get_models(client: LauncherClient, args: argparse.Namespace) -> dict[str, Any]:
    flt: dict[str, Any] = {}
    if args.ids:
        flt["ids"] = args.ids
    if args.names:
        flt["names"] = args.names
    if args.search:
        flt["searchName"] = args.search
    return client.model.get_models(offset=args.offset, limit=args.limit, filter=flt or None)


def _get_model_state(client: LauncherClient, args: argparse.Namespace) -> dict[str, Any]:
    return client.model.download_state(
        model_id=args.model_id, to_dir=args.out, state_id=args.state_id, keys=args.keys
    )


def _upload_state(client: LauncherClient, args: argparse.Namespace) -> dict[str, Any]:
    data = [{"key": key, "data": path} for key, path in args.key]
    return client.model.upload_state(
        model_id=args.model_id, name=args.name, data=data, delete_states=args.delete_states
    )


def _rename_state(client: LauncherClient, args: argparse.Namespace) -> dict[str, Any]:
    return client.model.update_model_state(
        model_id=args.model_id, state_id=args.state_id, properties={"name": args.name}
    )


def _creating(client: LauncherClient, args: argparse.Namespace) -> dict[str, Any]:
    return client.model.get_creating_states(model_id=args.model_id)


def _snapshot(client: LauncherClient, args: argparse.Namespace) -> dict[str, Any]:
    return client.model.snapshot_model(model_id=args.model_id, name=args.name)


def _delete_snapshot(client: LauncherClient, args: argparse.Namespace) -> dict[str, Any]:
    return client.model.delete_snapshot(model_id=args.model_id, snapshot_id=args.snapshot_id)


def _create_dataset(client: LauncherClient, args: argparse.Namespace) -> dict[str, Any]:
    return client.dataset.create_dataset(
        name=args.name, description=args.description, keys=args.key
    )


def _add_entries(client: LauncherClient, args: argparse.Namespace) -> dict[str, Any]:
    keys = [{"key": key, "data": _rows(str(path))} for key, path in args.key]
    return client.dataset.add_entries(dataset_id=args.dataset_id, keys=keys)


def _get_datasets(client: LauncherClient, args: argparse.Namespace) -> dict[str, Any]:
    return client.dataset.get_datasets(
        offset=args.offset, limit=args.limit, filter=_ids_filter(args)
    )


def _get_entries(client: LauncherClient, args: argparse.Namespace) -> dict[str, Any]:
    entries = _entries(client, args)
    if isinstance(entries, tuple):
        return entries[0]
    return client.dataset.get_entries(dataset_id=args.dataset_id, entries=entries)


def _remove_entries(client: LauncherClient, args: argparse.Namespace) -> dict[str, Any]:
    entries = _entries(client, args)
    if isinstance(entries, tuple):
        return entries[0]
    return client.dataset.remove_entries(dataset_id=args.dataset_id, entries=entries)


def _delete_dataset(client: LauncherClient, args: argparse.Namespace) -> dict[str, Any]:
    return client.dataset.delete_dataset(dataset_id=args.dataset_id)


def _create_launcher(client: LauncherClient, args: argparse.Namespace) -> dict[str, Any]:
    return client.persistent_launcher.create_persistent_launcher(name=args.name, spec=args.spec)


def _get_launchers(client: LauncherClient, args: argparse.Namespace) -> dict[str, Any]:
    return client.persistent_launcher.get_persistent_launchers(
        offset=args.offset, limit=args.limit, filter=_ids_filter(args)
    )


def _get_sysinfo(client: LauncherClient, args: argparse.Namespace) -> dict[str, Any]:
    return client.persistent_launcher.get_sysinfo(
        persistent_launcher_id=args.persistent_launcher_id, from_timestamp=args.from_timestamp
    )


def _delete_launcher(client: LauncherClient, args: argparse.Namespace) -> dict[str, Any]:
    return client.persistent_launcher.delete_persistent_launcher(
        persistent_launcher_id=args.persistent_launcher_id
    )
