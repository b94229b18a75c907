"""The snapshot half of the Model service: SnapshotModel, DeleteSnapshot, and their listing.

A snapshot freezes a model's code folder and its active state (see
``launcher.store.snapshots``); ``mountModels`` entries with a ``snapshotId`` mount it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable
from pathlib import Path

import grpc

from launcher.api import convert
from launcher.api.convert import unknown_error
from launcher.api.tenancy import ModelTenancy
from launcher.api.validation import check_id, check_name
from launcher.auth import access
from launcher.auth.owners import SNAPSHOT
from launcher.auth.quotas import QuotaLedger
from launcher.errors import ModelNotFound, RequestError
from launcher.store.errors import StoreError
from launcher.store.models import ModelRegistry
from launcher.store.snapshots import SnapshotRecord, SnapshotStore
from launcher.store.states import StateStore
from launcher.v1 import common_pb2, model_pb2


def snapshot_infos(records: Iterable[SnapshotRecord]) -> list[model_pb2.SnapshotInfo]:
    """MODEL's ``snapshots``: ``{"id", "name", "createdAt", "stateId"}`` each."""
    return [
        model_pb2.SnapshotInfo(
            id=r.id, name=r.name, created_at=convert.unix_ms(r.created_at), state_id=r.state_id
        )
        for r in records
    ]


class SnapshotApi:
    """Mixed into the Model servicer next to ``StateApi`` (which sets ``models``/``snapshots``)."""

    models: ModelRegistry
    snapshots: SnapshotStore | None
    states: StateStore
    tenancy: ModelTenancy | None = None
    quotas: QuotaLedger | None = None

    def _store(self) -> SnapshotStore:
        if self.snapshots is None:
            raise RuntimeError("the Model servicer was built without a snapshot store")
        return self.snapshots

    async def SnapshotModel(
        self, request: model_pb2.SnapshotModelRequest, context: grpc.aio.ServicerContext
    ) -> model_pb2.SnapshotModelResponse:
        try:
            check_id("modelId", request.model_id, "a model id")
            check_name("name", request.name)
            if not self.models.exists(request.model_id):
                raise ModelNotFound(request.model_id)
            # The folder as it is, even with a broken model.toml: the snapshot keeps what is there.
            code_dir = Path(self.models.models_dir, request.model_id).resolve(strict=True)
            caller = access.current()
            if self.tenancy is not None:  # it freezes the active state: the caller's own
                await asyncio.to_thread(self.tenancy.active, caller, request.model_id)
            record = await self._create_snapshot(caller, request.model_id, request.name, code_dir)
        except RequestError as e:
            return model_pb2.SnapshotModelResponse(error=convert.error_to_proto(e))
        except StoreError as e:  # state_not_found: no active state to freeze
            return model_pb2.SnapshotModelResponse(
                error=convert.error_to_proto(RequestError(e.code))
            )
        except Exception:
            return model_pb2.SnapshotModelResponse(
                error=convert.error_to_proto(unknown_error("snapshotModel"))
            )
        return model_pb2.SnapshotModelResponse(
            result=model_pb2.SnapshotModelResponse.Result(snapshot_id=record.id)
        )

    async def _create_snapshot(
        self, caller: access.Caller, model_id: str, name: str, code_dir: Path
    ) -> SnapshotRecord:
        """A snapshot of the active state, owned by the caller's tenant, whose keys count
        towards its quota: reserved at their full size until the snapshot is committed."""
        store = self._store()
        reservation = None
        if self.quotas is not None and caller.max_stored_bytes is not None:
            states = self.states
            active = await asyncio.to_thread(states.active_state_id, model_id)
            size = 0
            if active is not None:
                state = await asyncio.to_thread(states.get, model_id, active)
                size = sum(k.byte_size for k in state.keys)
            reservation = await self.quotas.areserve(caller.tenant, caller.max_stored_bytes, size)
        try:
            tenancy = self.tenancy
            own = None if tenancy is None else functools.partial(tenancy.own_snapshot, caller)
            # The owner's row commits with the snapshot's rows: no crash leaves it unowned.
            return await asyncio.to_thread(store.create, model_id, name, code_dir, own)
        finally:
            if reservation is not None:
                reservation.release()

    async def DeleteSnapshot(
        self, request: model_pb2.SnapshotRef, context: grpc.aio.ServicerContext
    ) -> common_pb2.EmptyResponse:
        try:
            check_id("modelId", request.model_id, "a model id")
            check_id("snapshotId", request.snapshot_id, "a snapshot id")
            store = self._store()
            if self.tenancy is not None:
                await asyncio.to_thread(
                    self.tenancy.check.check, access.current(), SNAPSHOT, request.snapshot_id
                )
            # A snapshot outlives its model's folder; it can still be deleted then.
            if not self.models.exists(request.model_id) and not await asyncio.to_thread(
                store.exists, request.model_id, request.snapshot_id
            ):
                raise ModelNotFound(request.model_id)
            await asyncio.to_thread(store.delete, request.model_id, request.snapshot_id)
        except RequestError as e:
            return convert.empty_error(e)
        except StoreError as e:  # snapshot_not_found
            return convert.empty_error(RequestError(e.code))
        except Exception:
            return convert.empty_error(unknown_error("deleteSnapshot"))
        return convert.empty_ok()
