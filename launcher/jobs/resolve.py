"""Resolving a checked createState header against the stores: model, launcher, mounts, datasets.

Blocking (file system and SQLite): callers run ``Resolver.resolve`` in a thread. What it
opens (dataset and state key descriptors) goes into the ``JobRequest``, whose ``close``
releases it, also when resolution fails half way.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from launcher import outcomes as oc
from launcher import rules
from launcher.errors import ModelNotFound, NotFound, invalid
from launcher.jobs.request import JobRequest, ResolvedMount
from launcher.params import ParamSource
from launcher.store.models import ModelConfigError, ModelReadError, ModelRegistry, ParamRule
from launcher.store.snapshots import SnapshotNotFound, SnapshotStore
from launcher.store.states import KeyReader, StateNotFound, StateStore
from runtime._tensor_decode import read_header
from runtime.tensor import TensorError

log = logging.getLogger("launcher.intake")

#: Enough bytes for any tensor header: type, rank and 255 ten-byte dimensions.
_HEADER_BYTES = 2 + 255 * 10


@dataclass(frozen=True)
class MountRef:
    """A checked ``mountModels`` entry."""

    model_id: str
    state_id: str | None = None
    snapshot_id: str | None = None


@dataclass(frozen=True)
class DatasetParam:
    """A checked dataset param: ``params[index]`` named ``name``."""

    index: int
    name: str
    dataset_id: str
    dataset_key: str


class DatasetSource(Protocol):
    def open_param(self, dataset_id: str, dataset_key: str, name: str) -> ParamSource: ...


class LauncherLookup(Protocol):
    def get(self, launcher_id: str) -> Any: ...


class Resolver:
    def __init__(
        self,
        models: ModelRegistry,
        states: StateStore,
        datasets: DatasetSource,
        launchers: LauncherLookup,
        snapshots: SnapshotStore | None = None,
    ) -> None:
        self.models = models
        self.states = states
        self.datasets = datasets
        self.launchers = launchers
        self.snapshots = snapshots

    async def aresolve(
        self,
        request: JobRequest,
        mounts: Sequence[MountRef] = (),
        dataset_params: Sequence[DatasetParam] = (),
    ) -> None:
        """``resolve`` from the event loop: the model folder read in the folder readers'
        threads (one hand-over); the rest in a thread only when there is something to open
        (mounts, dataset params), else here (at most one indexed read of a launcher row)."""
        try:
            request.model = await self.models.aload(request.model_id)
        except (ModelConfigError, ModelReadError) as e:
            self._startup_failure(request, e)
        if mounts or dataset_params:
            await asyncio.to_thread(self._resolve_rest, request, mounts, dataset_params)
        else:
            self._resolve_rest(request, mounts, dataset_params)

    @staticmethod
    def _startup_failure(request: JobRequest, error: ModelConfigError | ModelReadError) -> None:
        """The model folder cannot run: the job is accepted and fails with the reason."""
        if isinstance(error, ModelConfigError):
            log.warning("model %s: invalid_executable_file: %s", request.model_id, error)
            request.startup_failure = oc.InvalidExecutableFile(str(error))
        else:
            log.warning("model %s: read_executable_file_failed: %s", request.model_id, error)
            request.startup_failure = oc.ReadExecutableFileFailed(str(error))

    def _resolve_rest(
        self,
        request: JobRequest,
        mounts: Sequence[MountRef],
        dataset_params: Sequence[DatasetParam],
    ) -> None:
        """The launcher, the mounts and the dataset params of a request (blocking)."""
        if request.persistent_launcher_id is not None:
            launcher = self.launchers.get(request.persistent_launcher_id)
            if launcher is None:
                raise NotFound("persistent_launcher_not_found")
            request.spec = launcher.spec
        for mount in mounts:
            request.mounts.append(self._resolve_mount(mount, request))
        model_rules = {r.name: r for r in request.model.parameters} if request.model else {}
        for param in dataset_params:
            source = self.datasets.open_param(param.dataset_id, param.dataset_key, param.name)
            request.params[param.name] = source
            rule = model_rules.get(param.name)
            if rule is not None:
                check_source(f"params[{param.index}].data", source, rule)

    def _resolve_mount(self, mount: MountRef, request: JobRequest) -> ResolvedMount:
        if mount.snapshot_id is not None:
            return self._resolve_snapshot(mount, request)
        try:
            # Only its files are mounted: a broken model.toml does not hide the model.
            folder = self.models.folder(mount.model_id)
        except (ModelNotFound, ModelConfigError, ModelReadError):
            raise NotFound("model_to_mount_not_found") from None
        try:
            record = self.states.get(mount.model_id, mount.state_id)
            self._check_made_from(record.mounted_models)
            keys = open_keys(
                lambda key: self.states.open_key(mount.model_id, record.id, key),
                [k.key for k in record.keys],
            )
        except StateNotFound:  # also when deleted between the lookup and the opening
            raise NotFound("state_for_model_to_mount_not_found") from None
        return ResolvedMount(mount.model_id, str(folder), record.id, None, keys)

    def _resolve_snapshot(self, mount: MountRef, request: JobRequest) -> ResolvedMount:
        """The snapshot's frozen folder and state. A lease on the request keeps its folder
        while the job lives, even if the snapshot is deleted meanwhile."""
        if self.snapshots is None or mount.snapshot_id is None:
            raise NotFound("snapshot_for_model_to_mount_not_found")
        try:
            snapshot, release = self.snapshots.acquire(mount.model_id, mount.snapshot_id, request)
            request.releases.append(release)
        except SnapshotNotFound:
            # A snapshot outlives its model's folder; without either, the model is unknown.
            if not self.models.exists(mount.model_id):
                raise NotFound("model_to_mount_not_found") from None
            raise NotFound("snapshot_for_model_to_mount_not_found") from None
        self._check_made_from(snapshot.mounted_models)
        by_key = {k.key.key: k for k in snapshot.keys}
        keys = open_keys(lambda key: snapshot.open_key(by_key[key]), list(by_key))
        return ResolvedMount(
            mount.model_id, str(snapshot.code_dir), snapshot.state_id, snapshot.id, keys
        )

    def _check_made_from(self, mounted_models: tuple[dict[str, Any], ...]) -> None:
        """``snapshot_no_longer_exists``: the state to mount was made by a job that mounted a
        snapshot, and that snapshot has been deleted since."""
        for made_from in mounted_models:
            snapshot_id = made_from.get("snapshotId")
            if snapshot_id is None:
                continue
            if self.snapshots is None or not self.snapshots.exists(
                made_from["modelId"], snapshot_id
            ):
                raise NotFound("snapshot_no_longer_exists")


def check_source(path: str, source: ParamSource, rule: ParamRule) -> None:
    """A dataset param against the model's parameter definition: every entry's type and
    shape, read from its header (the entries were validated when they were added)."""
    if rule.allowed_types is None and rule.shape is None:
        return
    for index in range(source.amount):
        length = int(source.lengths[index])
        head = os.pread(source.fd, min(length, _HEADER_BYTES), int(source.offsets[index]))
        try:
            header = read_header(memoryview(head), 0)
        except TensorError as e:  # cannot happen for a validated entry; refused all the same
            raise invalid(f"{path}[{index}]", str(e)) from None
        rules.check_tensor(
            f"{path}[{index}]", header.type, header.shape, rule.allowed_types, rule.shape
        )


def open_keys(open_key: Callable[[str], KeyReader], names: list[str]) -> dict[str, ParamSource]:
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
