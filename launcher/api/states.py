"""The state half of the Model service: list models, download, upload, rename, activate, delete."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc

from launcher import rules
from launcher.api import convert
from launcher.api.convert import unknown_error
from launcher.api.snapshots import snapshot_infos
from launcher.api.tenancy import ModelTenancy
from launcher.api.validation import check_id, check_mounts, check_name
from launcher.auth import access
from launcher.auth.quotas import QuotaLedger
from launcher.errors import Conflict, ModelNotFound, NotFound, RequestError, invalid
from launcher.jobs.caps import PhaseCaps
from launcher.store.errors import CorruptBlob, StoreError
from launcher.store.model_toml import DEFAULT_CODE_STARTUP, DEFAULT_CREATE_STATE
from launcher.store.models import (
    Listed,
    ModelConfig,
    ModelRegistry,
)
from launcher.store.snapshots import SnapshotStore
from launcher.store.states import StateRecord, StateStore
from launcher.v1 import common_pb2, model_pb2

CHUNK = 1 << 20
MAX_PAGE = 1000


def _state_info(record: StateRecord) -> model_pb2.StateInfo:
    return model_pb2.StateInfo(
        id=record.id,
        name=record.name,
        created_at=convert.unix_ms(record.created_at),
        being_deleted=record.being_deleted,
        keys=[model_pb2.StateKeyInfo(key=k.key, byte_size=k.byte_size) for k in record.keys],
        mounted_models=[
            model_pb2.MountedModelInfo(model_id=m["modelId"], snapshot_id=m.get("snapshotId"))
            for m in record.mounted_models
        ],
    )


def _listed_name(model_id: str, config: object) -> str:
    """The name a model is listed under: its model.toml's, or its id when that is unreadable."""
    return config.name if isinstance(config, ModelConfig) else model_id


class StateApi:
    """Mixed into the Model servicer; every method answers errors as values."""

    #: Tenant checks and stored-bytes quotas (set by the server; None: one tenant, no quota).
    tenancy: ModelTenancy | None = None
    quotas: QuotaLedger | None = None
    #: The operator's caps on phase limits (``--max-phase-seconds``), None: no cap.
    phase_caps: PhaseCaps | None = None

    def __init__(
        self, models: ModelRegistry, states: StateStore, snapshots: SnapshotStore | None = None
    ) -> None:
        self.models = models
        self.states = states
        self.snapshots = snapshots

    def _model_info(self, model_id: str, config: Listed) -> model_pb2.ModelInfo:
        """The page's entry of one model, without its states and snapshots."""
        info = model_pb2.ModelInfo(id=model_id, name=model_id)
        if isinstance(config, ModelConfig):
            if self.phase_caps is not None:  # the limits that will apply, not those asked
                config = self.phase_caps.clamp(config)
            info.name = config.name
            info.created_at = convert.unix_ms(config.created_at)
            info.max_durations_seconds.code_startup = config.max_code_startup
            info.max_durations_seconds.create_state = config.max_create_state
        else:  # (a refusal kept for listings is never raised: it is shared)
            # listed all the same, with the defaults: its createState answers why it cannot run
            info.max_durations_seconds.code_startup = DEFAULT_CODE_STARTUP
            info.max_durations_seconds.create_state = DEFAULT_CREATE_STATE
            with contextlib.suppress(OSError):
                mtime = (self.models.models_dir / model_id).stat().st_mtime
                info.created_at = convert.unix_ms(mtime)
        return info

    def _model_infos(
        self, page: list[str], configs: dict[str, Listed], caller: access.Caller | None
    ) -> list[model_pb2.ModelInfo]:
        """The page's entries: its models' states, active states and snapshots read in a few
        queries for the whole page (not a few per model); only ``caller``'s tenant's."""
        active = self.states.active_state_ids(page)
        states = self.states.list_many(page)
        snapshots = {} if self.snapshots is None else self.snapshots.list_many(page)
        if self.tenancy is not None and caller is not None:
            state_ids = [r.id for rs in states.values() for r in rs] + list(active.values())
            mine = self.tenancy.states(caller, state_ids)
            states = {m: [r for r in rs if r.id in mine] for m, rs in states.items()}
            active = {m: s for m, s in active.items() if s in mine}
            seen = self.tenancy.snapshots(caller, [r.id for rs in snapshots.values() for r in rs])
            snapshots = {m: [r for r in rs if r.id in seen] for m, rs in snapshots.items()}
        infos = []
        for model_id in page:
            info = self._model_info(model_id, configs[model_id])
            if model_id in active:
                info.active_state = active[model_id]
            info.states.extend(_state_info(r) for r in states[model_id])
            if self.snapshots is not None:
                info.snapshots.extend(snapshot_infos(snapshots[model_id]))
            infos.append(info)
        return infos

    async def _get_models(self, request: model_pb2.GetModelsRequest) -> model_pb2.GetModelsResponse:
        limit = request.limit or 20
        if limit > MAX_PAGE:
            raise invalid("limit", f"at most {MAX_PAGE}")
        ids = await self.models.alist_ids()
        if request.ids:
            wanted = set(request.ids)
            ids = [i for i in ids if i in wanted]
        by_name = bool(request.names) or request.HasField("search_name")
        # Without a name filter only the page's folders are read; with one, every candidate's
        # (its name is in its model.toml). States and snapshots are looked up for the page only.
        # Folders inotify reports unchanged are not read again (``ModelRegistry.aload_many``).
        configs = await self.models.aload_many(ids if by_name else ids[request.offset :][:limit])
        if request.names:
            names = set(request.names)
            ids = [i for i in ids if _listed_name(i, configs[i]) in names]
        if request.HasField("search_name"):
            needle = request.search_name.lower()
            ids = [i for i in ids if needle in _listed_name(i, configs[i]).lower()]
        page_ids = ids[request.offset :][:limit]
        caller = access.current() if self.tenancy is not None else None
        page = await asyncio.to_thread(self._model_infos, page_ids, configs, caller)
        return model_pb2.GetModelsResponse(
            result=model_pb2.GetModelsResponse.Result(
                models=page, total=len(ids), offset=request.offset, limit=limit
            )
        )

    async def GetModels(
        self, request: model_pb2.GetModelsRequest, context: grpc.aio.ServicerContext
    ) -> model_pb2.GetModelsResponse:
        try:
            return await self._get_models(request)
        except RequestError as e:
            return model_pb2.GetModelsResponse(error=convert.error_to_proto(e))

    def _check_model(self, model_id: str) -> None:
        check_id("modelId", model_id, "a model id")
        if not self.models.exists(model_id):
            raise ModelNotFound(model_id)

    async def GetModelState(
        self, request: model_pb2.GetModelStateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[model_pb2.StateDataChunk]:
        try:
            self._check_model(request.model_id)
            state_id = request.state_id if request.HasField("state_id") else None
            record = await asyncio.to_thread(self.states.get, request.model_id, state_id)
            if self.tenancy is not None:
                await asyncio.to_thread(self.tenancy.state, access.current(), record.id)
            names = [k.key for k in record.keys]
            keys = list(request.keys) or names
            for i, key in enumerate(keys):
                if key in keys[:i]:  # the stream names each key once, in its first chunk
                    raise invalid(f"keys[{i}]", f"the key {key!r} is given twice")
                if key not in names:
                    raise NotFound("state_key_not_found")
            readers = [
                await asyncio.to_thread(self.states.open_key, request.model_id, record.id, key)
                for key in keys
            ]
        except RequestError as e:
            yield model_pb2.StateDataChunk(error=convert.error_to_proto(e))
            return
        except CorruptBlob:
            yield model_pb2.StateDataChunk(
                error=convert.error_to_proto(unknown_error("getModelState"))
            )
            return
        except StoreError as e:
            yield model_pb2.StateDataChunk(error=convert.error_to_proto(RequestError(e.code)))
            return
        try:
            for key, reader in zip(keys, readers, strict=True):
                chunks = reader.chunks(CHUNK)
                first = True
                while True:
                    data = await asyncio.to_thread(next, chunks, None)
                    if data is None:
                        break
                    if first:
                        yield model_pb2.StateDataChunk(
                            key=key, byte_size=reader.byte_size, data=data
                        )
                        first = False
                    else:
                        yield model_pb2.StateDataChunk(data=data)
                if first:
                    yield model_pb2.StateDataChunk(key=key, byte_size=0)
        except CorruptBlob:
            # Found only after the key's bytes were sent: the error chunk tells the client to
            # throw away what it received (the client reads every chunk for an error).
            yield model_pb2.StateDataChunk(
                error=convert.error_to_proto(unknown_error("getModelState"))
            )
        finally:
            for reader in readers:
                reader.close()

    async def UploadState(
        self,
        request_iterator: AsyncIterator[model_pb2.UploadStateRequest],
        context: grpc.aio.ServicerContext,
    ) -> model_pb2.UploadStateResponse:
        try:
            state_id = await self._upload(request_iterator)
        except RequestError as e:
            return model_pb2.UploadStateResponse(error=convert.error_to_proto(e))
        except StoreError as e:
            return model_pb2.UploadStateResponse(error=convert.error_to_proto(RequestError(e.code)))
        return model_pb2.UploadStateResponse(
            result=model_pb2.UploadStateResponse.Result(state_id=state_id)
        )

    async def _upload(self, messages: AsyncIterator[model_pb2.UploadStateRequest]) -> str:
        first = await anext(messages, None)
        if first is None or first.WhichOneof("part") != "header":
            raise invalid("header", "the first message of UploadState must be the header")
        header = first.header
        self._check_model(header.model_id)
        check_name("name", header.name)
        seen: set[str] = set()
        for i, key in enumerate(header.keys):
            rules.STATE_KEY_NAME.check(f"data[{i}].key", key.key)
            if key.key in seen:
                raise invalid(f"data[{i}].key", f"the key {key.key!r} is given twice")
            seen.add(key.key)
            if key.byte_size > rules.MAX_STATE_KEY_BYTES:
                raise invalid(f"data[{i}].data", "a state key holds at most 1 GiB")
        if len(header.keys) > rules.MAX_STATE_KEYS:
            raise invalid("data", f"a state has at most {rules.MAX_STATE_KEYS} keys")
        mounted = await asyncio.to_thread(self._mounted_models, header.mount_models)
        caller = access.current()
        active = await asyncio.to_thread(self.states.active_state_id, header.model_id)
        for state_id in header.delete_states:
            await asyncio.to_thread(self.states.get, header.model_id, state_id)
        if self.tenancy is not None:  # before telling whether another tenant's state is active
            await asyncio.to_thread(self.tenancy.header, caller, header)
            for state_id in header.delete_states:
                await asyncio.to_thread(self.tenancy.state, caller, state_id)
        if active in header.delete_states:  # refused before anything is stored or deleted
            raise Conflict("state_is_active")
        reservation = None
        if self.quotas is not None:  # the declared bytes, held until committed or dropped
            declared = sum(max(0, k.byte_size) for k in header.keys)
            reservation = await self.quotas.areserve(
                caller.tenant, caller.max_stored_bytes, declared
            )
        try:
            return await self._upload_keys(header, messages, mounted)
        finally:
            if reservation is not None:
                reservation.release()

    async def _upload_keys(
        self, header: Any, messages: AsyncIterator[model_pb2.UploadStateRequest], mounted: Any
    ) -> str:
        pending = await asyncio.to_thread(
            self.states.begin, header.model_id, header.name, None, mounted
        )
        if self.tenancy is not None:  # owned before it exists, so never without an owner
            await asyncio.to_thread(self.tenancy.own_state, access.current(), pending.state_id)
        try:
            index = 0
            writer = None
            left = 0
            keys = list(header.keys)

            def next_writer() -> None:
                nonlocal index, writer, left
                while index < len(keys) and (writer is None or left == 0):
                    if writer is not None:
                        writer.finish()
                    writer = pending.key_writer(keys[index].key)
                    left = keys[index].byte_size
                    index += 1

            next_writer()
            async for message in messages:
                if message.WhichOneof("part") != "chunk":
                    raise invalid("header", "the header may be sent only once")
                data = memoryview(message.chunk)
                while data:
                    if writer is None or (left == 0 and index >= len(keys)):
                        raise invalid("data", "more bytes than the keys' declared sizes")
                    n = min(left, len(data))
                    await asyncio.to_thread(writer.write, data[:n])  # disk I/O off the loop
                    left -= n
                    data = data[n:]
                    if left == 0:
                        await asyncio.to_thread(next_writer)
            if left or index < len(keys):
                raise invalid("data", "fewer bytes than the keys' declared sizes")
            if writer is not None:
                await asyncio.to_thread(writer.finish)
            record = await asyncio.to_thread(pending.commit)
        except BaseException:
            await asyncio.to_thread(pending.abort)
            raise
        for state_id in header.delete_states:
            try:
                await asyncio.to_thread(self.states.delete, header.model_id, state_id)
            except StoreError:
                pass  # already gone, or active: the new state is still created
        return record.id

    def _mounted_models(self, mounts: Any) -> list[dict[str, str]]:
        """An uploaded state's ``mountedModels``: each entry must name what exists."""
        out = []
        for mount in check_mounts(mounts):
            entry = {"modelId": mount.model_id}
            if mount.snapshot_id is not None:
                if self.snapshots is None or not self.snapshots.exists(
                    mount.model_id, mount.snapshot_id
                ):
                    if not self.models.exists(mount.model_id):
                        raise NotFound("model_to_mount_not_found")
                    raise NotFound("snapshot_for_model_to_mount_not_found")
                entry["snapshotId"] = mount.snapshot_id
            elif not self.models.exists(mount.model_id):
                raise NotFound("model_to_mount_not_found")
            elif mount.state_id is not None:
                try:
                    self.states.get(mount.model_id, mount.state_id)
                except StoreError:
                    raise NotFound("state_for_model_to_mount_not_found") from None
            out.append(entry)
        return out

    async def _simple(
        self, model_id: str, action: Any, state_id: str, *args: Any
    ) -> common_pb2.EmptyResponse:
        try:
            self._check_model(model_id)
            if self.tenancy is not None:
                await asyncio.to_thread(self.tenancy.state, access.current(), state_id)
            await asyncio.to_thread(action, model_id, state_id, *args)
        except RequestError as e:
            return convert.empty_error(e)
        except StoreError as e:
            return convert.empty_error(RequestError(e.code))
        return convert.empty_ok()

    async def UpdateModelState(
        self, request: model_pb2.UpdateModelStateRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.EmptyResponse:
        if not request.HasField("name"):
            return convert.empty_ok()
        try:
            check_name("properties.name", request.name)
        except RequestError as e:
            return convert.empty_error(e)
        return await self._simple(
            request.model_id, self.states.rename, request.state_id, request.name
        )

    async def SetActiveModelState(
        self, request: model_pb2.StateRef, context: grpc.aio.ServicerContext
    ) -> common_pb2.EmptyResponse:
        return await self._simple(request.model_id, self._set_active, request.state_id)

    def _set_active(self, model_id: str, state_id: str) -> None:
        """A model has one active state: a tenant may not take it over from another."""
        if self.tenancy is not None:
            self.tenancy.active(access.current(), model_id)
        self.states.set_active(model_id, state_id)

    async def DeleteModelState(
        self, request: model_pb2.StateRef, context: grpc.aio.ServicerContext
    ) -> common_pb2.EmptyResponse:
        return await self._simple(request.model_id, self.states.delete, request.state_id)
