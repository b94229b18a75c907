"""Turning a CreateState request stream into a JobRequest, or a RequestError.

Order matters: the header is checked field by field, then everything it names is
resolved (model, launcher, datasets, mounts), then the inline params' bytes are
received — validated tensor by tensor as they stream in and spooled to unlinked files,
never held in memory — and checked against the model's parameter definitions.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from launcher import faults
from launcher import outcomes as oc
from launcher.api.placement import placeable_spec
from launcher.api.validation import MAX_MOUNTS, MAX_PARAMS, check_id, check_name
from launcher.errors import RequestError, invalid
from launcher.executors.base import Executor
from launcher.jobs.request import JobRequest, ResolvedMount
from launcher.params import ParamSource
from launcher.store.models import ModelConfigError, ModelReadError, ModelRegistry
from launcher.store.snapshots import SnapshotNotFound, SnapshotStore
from launcher.store.states import KeyReader, StateNotFound, StateStore
from launcher.v1 import model_pb2
from runtime.tensor import StreamValidator, TensorError, TensorInfo

MAX_INLINE_BYTES = 1 << 40


class DatasetSource(Protocol):
    def open_param(self, dataset_id: str, dataset_key: str, name: str) -> ParamSource: ...


class LauncherLookup(Protocol):
    def get(self, launcher_id: str) -> Any: ...


class Intake:
    def __init__(
        self,
        models: ModelRegistry,
        states: StateStore,
        datasets: DatasetSource,
        launchers: LauncherLookup,
        spool_dir: Path,
        snapshots: SnapshotStore | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.executor = executor
        self.models = models
        self.snapshots = snapshots
        self.states = states
        self.datasets = datasets
        self.launchers = launchers
        self.spool_dir = spool_dir

    async def receive(
        self, first: model_pb2.CreateStateRequest, rest: AsyncIterator[model_pb2.CreateStateRequest]
    ) -> JobRequest:
        if first.WhichOneof("part") != "header":
            raise invalid("header", "the first message of CreateState must be the header")
        header = first.header
        request = self._check_header(header)
        try:
            await asyncio.to_thread(self._resolve, header, request)
            await self._receive_inline(header, request, rest)
        except BaseException:
            request.close()
            raise
        return request

    # ---- the header ----

    def _check_header(self, header: model_pb2.CreateStateHeader) -> JobRequest:
        model_id = check_id("modelId", header.model_id, "a model id")
        name = check_name("name", header.name)
        if len(header.params) > MAX_PARAMS:
            raise invalid("params", f"at most {MAX_PARAMS} params")
        seen: set[str] = set()
        for i, param in enumerate(header.params):
            check_name(f"params[{i}].name", param.name)
            if param.name in seen:
                raise invalid(f"params[{i}].name", f"the name {param.name!r} is used twice")
            seen.add(param.name)
            kind = param.WhichOneof("data")
            if kind is None:
                raise invalid(f"params[{i}].data", "must be a list of tensors or a dataset")
            if kind == "inline" and param.inline.byte_size > MAX_INLINE_BYTES:
                raise invalid(f"params[{i}].data", "inline data is limited to 1 TiB")
            if kind == "dataset":
                check_id(f"params[{i}].data.datasetId", param.dataset.dataset_id, "a dataset id")
                check_name(f"params[{i}].data.datasetKey", param.dataset.dataset_key)
        if len(header.mount_models) > MAX_MOUNTS:
            raise invalid("mountModels", f"at most {MAX_MOUNTS} models may be mounted")
        for i, mount in enumerate(header.mount_models):
            check_id(f"mountModels[{i}].modelId", mount.model_id, "a model id")
            if mount.model_id == model_id:
                raise invalid(f"mountModels[{i}].modelId", "a model cannot mount itself")
            if mount.HasField("state_id") and mount.HasField("snapshot_id"):
                raise invalid(f"mountModels[{i}]", "give stateId or snapshotId, not both")
            if mount.HasField("state_id"):
                check_id(f"mountModels[{i}].stateId", mount.state_id, "a state id")
            if mount.HasField("snapshot_id"):
                check_id(f"mountModels[{i}].snapshotId", mount.snapshot_id, "a snapshot id")
        location = header.execution_location.WhichOneof("location")
        request = JobRequest(model_id=model_id, name=name, model=None, startup_failure=None)
        if location == "temporary_launcher_spec":
            request.spec = placeable_spec(
                "executionLocation.spec",
                header.execution_location.temporary_launcher_spec,
                self.executor,
            )
        elif location == "persistent_launcher_id":
            request.persistent_launcher_id = check_id(
                "executionLocation.persistentLauncherId",
                header.execution_location.persistent_launcher_id,
                "a persistent launcher id",
            )
        else:
            raise invalid(
                "executionLocation",
                "must be {type: 'persistentLauncher', persistentLauncherId} or "
                "{type: 'temporaryLauncher', spec}",
            )
        return request

    # ---- resolution (blocking: runs in a thread) ----

    def _resolve(self, header: model_pb2.CreateStateHeader, request: JobRequest) -> None:
        if not self.models.exists(request.model_id):
            raise RequestError("model_not_found")
        try:
            request.model = self.models.load(request.model_id)
        except ModelConfigError as e:
            request.startup_failure = oc.InvalidExecutableFile(str(e))
        except ModelReadError as e:
            request.startup_failure = oc.ReadExecutableFileFailed(str(e))
        except KeyError:
            raise RequestError("model_not_found") from None
        if request.persistent_launcher_id is not None:
            launcher = self.launchers.get(request.persistent_launcher_id)
            if launcher is None:
                raise RequestError("persistent_launcher_not_found")
            request.spec = launcher.spec
        for mount in header.mount_models:
            request.mounts.append(self._resolve_mount(mount, request))
        for param in header.params:
            if param.WhichOneof("data") == "dataset":
                request.params[param.name] = self.datasets.open_param(
                    param.dataset.dataset_id, param.dataset.dataset_key, param.name
                )

    def _resolve_mount(self, mount: model_pb2.MountModel, request: JobRequest) -> ResolvedMount:
        if mount.HasField("snapshot_id"):
            return self._resolve_snapshot(mount, request)
        if not self.models.exists(mount.model_id):
            raise RequestError("model_to_mount_not_found")
        try:
            # Only its files are mounted: a broken model.toml does not hide the model.
            folder = (self.models.models_dir / mount.model_id).resolve(strict=True)
        except OSError:
            raise RequestError("model_to_mount_not_found") from None
        state_id = mount.state_id if mount.HasField("state_id") else None
        try:
            record = self.states.get(mount.model_id, state_id)
            self._check_made_from(record.mounted_models)
            keys = self._open_keys(
                lambda key: self.states.open_key(mount.model_id, record.id, key),
                [k.key for k in record.keys],
            )
        except StateNotFound:  # also when deleted between the lookup and the opening
            raise RequestError("state_for_model_to_mount_not_found") from None
        return ResolvedMount(mount.model_id, str(folder), record.id, None, keys)

    def _resolve_snapshot(self, mount: model_pb2.MountModel, request: JobRequest) -> ResolvedMount:
        """The snapshot's frozen folder and state. A lease on the request keeps its folder
        while the job lives, even if the snapshot is deleted meanwhile."""
        if self.snapshots is None:
            raise RequestError("snapshot_for_model_to_mount_not_found")
        try:
            snapshot = self.snapshots.acquire(mount.model_id, mount.snapshot_id, request)
        except SnapshotNotFound:
            # A snapshot outlives its model's folder; without either, the model is unknown.
            if not self.models.exists(mount.model_id):
                raise RequestError("model_to_mount_not_found") from None
            raise RequestError("snapshot_for_model_to_mount_not_found") from None
        self._check_made_from(snapshot.mounted_models)
        by_key = {k.key.key: k for k in snapshot.keys}
        keys = self._open_keys(lambda key: snapshot.open_key(by_key[key]), list(by_key))
        return ResolvedMount(
            mount.model_id, str(snapshot.code_dir), snapshot.state_id, snapshot.id, keys
        )

    def _check_made_from(self, mounted_models: tuple[dict[str, Any], ...]) -> None:
        """``snapshot_no_longer_exists``: the state to mount was made by a job that mounted a
        snapshot, and that snapshot has been deleted since. Models here are folders, not made
        from snapshots; a state is what is made from one, so this is where the code applies."""
        for made_from in mounted_models:
            snapshot_id = made_from.get("snapshotId")
            if snapshot_id is None:
                continue
            if self.snapshots is None or not self.snapshots.exists(
                made_from["modelId"], snapshot_id
            ):
                raise RequestError("snapshot_no_longer_exists")

    @staticmethod
    def _open_keys(
        open_key: Callable[[str], KeyReader], names: list[str]
    ) -> dict[str, ParamSource]:
        """Each key as a one-element source on its own descriptor; all or none stay open."""
        keys: dict[str, ParamSource] = {}
        try:
            for name in names:
                with open_key(name) as reader:
                    size = reader.byte_size
                    fd = os.dup(reader.fd)
                keys[name] = ParamSource(
                    name, fd, np.array([0], np.uint64), np.array([size], np.uint64)
                )
        except BaseException:
            for source in keys.values():
                source.close()
            raise
        return keys

    # ---- inline data ----

    async def _receive_inline(
        self,
        header: model_pb2.CreateStateHeader,
        request: JobRequest,
        rest: AsyncIterator[model_pb2.CreateStateRequest],
    ) -> None:
        rules = {r.name: r for r in request.model.parameters} if request.model else {}
        names = {p.name for p in header.params}
        for name, rule in rules.items():
            if rule.required and name not in names:
                raise invalid("params", f"the model requires a param named {name!r}")
        inline = [(i, p) for i, p in enumerate(header.params) if p.WhichOneof("data") == "inline"]
        pending: list[tuple[int, model_pb2.Param, _Spool]] = []
        for i, param in inline:
            spool = _Spool(
                self.spool_dir, f"params[{i}]", param.inline.byte_size, rules.get(param.name)
            )
            request.params[param.name] = spool.source(param.name)
            pending.append((i, param, spool))
        cursor = 0
        async for message in rest:
            if message.WhichOneof("part") != "chunk":
                raise invalid("header", "the header may be sent only once")
            chunk = message.chunk
            while cursor < len(pending) and pending[cursor][2].complete:
                cursor += 1
            if cursor >= len(pending) or chunk.param_index != pending[cursor][0]:
                raise invalid(
                    f"params[{chunk.param_index}].data",
                    "data chunks must follow the header, param after param in order, and "
                    "add up to each param's declared byte size",
                )
            pending[cursor][2].feed(chunk.data)
        for _, _, spool in pending:
            spool.finish()
        request.params = {p.name: request.params[p.name] for p in header.params}


SPOOL_PREFIX = "param-"


def open_spool_file(spool_dir: Path) -> int:
    """A file without a name (O_TMPFILE) in ``spool_dir``: nothing is left behind, whenever
    the launcher dies. Where the file system lacks O_TMPFILE, a named file is unlinked at
    once, and ``remove_spool_leftovers`` clears what a crash in between leaves."""
    try:
        return os.open(spool_dir, os.O_TMPFILE | os.O_RDWR, 0o600)
    except OSError:
        fd, name = tempfile.mkstemp(prefix=SPOOL_PREFIX, dir=spool_dir)
        os.unlink(name)
        return fd


def remove_spool_leftovers(spool_dir: Path) -> None:
    """At start: named spool files of a launcher that crashed between creating and unlinking."""
    for leftover in spool_dir.glob(SPOOL_PREFIX + "*"):
        leftover.unlink(missing_ok=True)


class _Spool:
    """One inline param being received: validated as it streams, spooled to an unlinked file."""

    def __init__(self, spool_dir: Path, path: str, size: int, rule: object) -> None:
        self.path = path
        self.size = size
        self.rule = rule
        self.received = 0
        self.validator = StreamValidator()
        self.tensors: list[TensorInfo] = []
        self.fd = open_spool_file(spool_dir)
        self._source: ParamSource | None = None

    @property
    def complete(self) -> bool:
        return self.received == self.size

    def source(self, name: str) -> ParamSource:
        self._source = ParamSource(name, self.fd, np.zeros(0, np.uint64), np.zeros(0, np.uint64))
        return self._source

    def feed(self, data: bytes) -> None:
        if self.received + len(data) > self.size:
            raise invalid(f"{self.path}.data", f"more bytes than the declared {self.size}")
        try:
            infos = self.validator.feed(data)
        except TensorError as e:
            raise invalid(f"{self.path}.data[{len(self.tensors)}]", str(e)) from None
        for info in infos:
            self._check_rule(len(self.tensors), info)
            self.tensors.append(info)
        if data:
            os.pwrite(self.fd, data, self.received)
        self.received += len(data)
        faults.point("upload_chunk")

    def _check_rule(self, index: int, info: TensorInfo) -> None:
        rule = self.rule
        if rule is None:
            return
        where = f"{self.path}.data[{index}]"
        allowed = getattr(rule, "allowed_types", None)
        if allowed and info.type not in allowed:
            raise invalid(where, f"type {info.type} is not allowed; allowed: {', '.join(allowed)}")
        shape = getattr(rule, "shape", None)
        if shape is not None and (
            len(shape) != len(info.shape)
            or any(want not in (-1, got) for want, got in zip(shape, info.shape, strict=True))
        ):
            want = "[" + ", ".join(str(s) for s in shape) + "]"
            raise invalid(where, f"shape {list(info.shape)} does not match {want} (-1: any)")

    def finish(self) -> None:
        if self.received != self.size:
            raise invalid(
                f"{self.path}.data", f"received {self.received} of the declared {self.size} bytes"
            )
        try:
            self.validator.finish()
        except TensorError as e:
            raise invalid(f"{self.path}.data[{len(self.tensors)}]", str(e)) from None
        assert self._source is not None
        self._source.offsets = np.array([t.start for t in self.tensors], np.uint64)
        self._source.lengths = np.array([t.end - t.start for t in self.tensors], np.uint64)
