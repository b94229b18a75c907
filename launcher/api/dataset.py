"""The gRPC Dataset service: requests checked and translated to ``DatasetStore`` calls.

No dataset logic lives here: each RPC validates its fields (``invalid_parameter`` with a
path), runs the store's blocking disk work in a thread so the event loop stays responsive,
and answers every refusal as the response's ``error`` value. Only a stream that breaks the
protocol itself (a chunk before the header) is aborted with a gRPC status.

AddEntries' messages come parsed by ``entries_wire.parse_add_entries_request`` (a chunk is a
view of the received bytes) and its chunks are written in batches (``WriteBatches``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Sequence

import grpc

from launcher import rules
from launcher.api.convert import empty_error, empty_ok, error_to_proto, unix_ms
from launcher.api.entries_wire import AddEntriesMessage
from launcher.api.write_batches import WriteBatches
from launcher.auth import access
from launcher.auth.access import AccessCheck
from launcher.auth.owners import DATASET
from launcher.auth.quotas import QuotaLedger
from launcher.errors import InternalError, RequestError, invalid
from launcher.store.datasets import (
    DatasetInfo,
    DatasetStore,
    EntryRange,
    KeyDef,
    KeyRules,
    PendingAdd,
)
from launcher.store.datasets.read import PART_BYTES
from launcher.v1 import common_pb2, dataset_pb2, dataset_pb2_grpc

log = logging.getLogger("launcher.api")

DEFAULT_PAGE = 20
MAX_PAGE = 1000
MAX_FILTER_IDS = 1000
#: Entries are sent in parts of at most this many bytes (never one message per big entry).
ENTRY_PART = PART_BYTES


class DatasetServicer(dataset_pb2_grpc.DatasetServicer):
    #: Tenant checks and stored-bytes quotas (set by the server; None: one tenant, no quota).
    access_check: AccessCheck | None = None
    quotas: QuotaLedger | None = None

    def __init__(self, store: DatasetStore) -> None:
        self._store = store

    async def _check(self, dataset_id: str) -> None:
        if self.access_check is not None:
            await self.access_check.acheck(access.current(), DATASET, dataset_id)

    async def CreateDataset(
        self, request: dataset_pb2.CreateDatasetRequest, context: grpc.aio.ServicerContext
    ) -> dataset_pb2.CreateDatasetResponse:
        try:
            keys = _keys_from_proto(request.keys)

            def make() -> DatasetInfo:
                return self._store.create(request.name, request.description, keys)

            if self.access_check is None:
                info = await asyncio.to_thread(make)
            else:  # the dataset and its owner in one transaction
                info = await asyncio.to_thread(
                    self.access_check.create_owned,
                    access.current(),
                    DATASET,
                    make,
                    lambda made: made.id,
                )
        except Exception as exc:
            err = _request_error(exc, "CreateDataset")
            return dataset_pb2.CreateDatasetResponse(error=error_to_proto(err))
        return dataset_pb2.CreateDatasetResponse(
            result=dataset_pb2.CreateDatasetResponse.Result(
                dataset_id=info.id, dataset_version_id=info.version_id
            )
        )

    async def AddEntries(
        self,
        request_iterator: AsyncIterator[AddEntriesMessage],
        context: grpc.aio.ServicerContext,
    ) -> dataset_pb2.AddEntriesResponse:
        first = await anext(aiter(request_iterator), None)
        if not isinstance(first, dataset_pb2.AddEntriesRequest) or not first.HasField("header"):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "AddEntries: the first message must be the header",
            )
        assert isinstance(first, dataset_pb2.AddEntriesRequest)  # abort() raised otherwise
        header = first.header
        reservation = None
        try:
            rules.DATASET_ID.check("datasetId", header.dataset_id)
            await self._check(header.dataset_id)
            if self.quotas is not None:
                caller = access.current()
                declared = sum(max(0, k.byte_size) for k in header.keys)
                reservation = await self.quotas.areserve(
                    caller.tenant, caller.max_stored_bytes, declared
                )
            pending = await asyncio.to_thread(
                self._store.begin_add,
                header.dataset_id,
                [(k.key, k.byte_size) for k in header.keys],
            )
        except Exception as exc:
            if reservation is not None:
                reservation.release()
            err = _request_error(exc, "AddEntries")
            return dataset_pb2.AddEntriesResponse(error=error_to_proto(err))
        committed = False
        try:
            await _receive(request_iterator, pending)
            version_id = await asyncio.to_thread(pending.commit)
            committed = True
        except Exception as exc:
            err = _request_error(exc, "AddEntries")
            return dataset_pb2.AddEntriesResponse(error=error_to_proto(err))
        finally:
            if not committed:
                await asyncio.to_thread(pending.abort)
            if reservation is not None:  # committed (now counted as stored) or thrown away
                reservation.release()
        return dataset_pb2.AddEntriesResponse(
            result=dataset_pb2.AddEntriesResponse.Result(dataset_version_id=version_id)
        )

    async def GetDatasets(
        self, request: dataset_pb2.GetDatasetsRequest, context: grpc.aio.ServicerContext
    ) -> dataset_pb2.GetDatasetsResponse:
        limit = request.limit or DEFAULT_PAGE
        try:
            if limit > MAX_PAGE:
                raise invalid("limit", f"{limit} is more than the page maximum {MAX_PAGE}")
            if len(request.ids) > MAX_FILTER_IDS:
                raise invalid("filter.ids", f"{len(request.ids)} ids; at most {MAX_FILTER_IDS}")
            for i, dataset_id in enumerate(request.ids):
                rules.DATASET_ID.check(f"filter.ids[{i}]", dataset_id)
            ids = list(request.ids) or None
            if self.access_check is not None:
                ids = await asyncio.to_thread(self._visible, ids)
            datasets: list[DatasetInfo] = []
            total = 0
            if ids != []:  # [] when none (of those asked) belong to the caller's tenant
                datasets, total = await asyncio.to_thread(
                    self._store.page, request.offset, limit, ids
                )
        except Exception as exc:
            err = _request_error(exc, "GetDatasets")
            return dataset_pb2.GetDatasetsResponse(error=error_to_proto(err))
        return dataset_pb2.GetDatasetsResponse(
            result=dataset_pb2.GetDatasetsResponse.Result(
                datasets=[_info_to_proto(d) for d in datasets],
                total=total,
                offset=request.offset,
                limit=limit,
            )
        )

    def _visible(self, ids: list[str] | None) -> list[str] | None:
        """The asked ids (None: all) narrowed to the caller's tenant's datasets."""
        assert self.access_check is not None
        caller = access.current()
        if ids is not None:
            return self.access_check.visible(caller, DATASET, ids)
        owned = self.access_check.owned(caller, DATASET)
        return None if owned is None else sorted(owned)

    async def GetEntries(
        self, request: dataset_pb2.GetEntriesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[dataset_pb2.GetEntriesChunk]:
        try:
            rules.DATASET_ID.check("datasetId", request.dataset_id)
            await self._check(request.dataset_id)
            selection = _selection(request.entries, request.HasField("entries"))
            snapshot = await asyncio.to_thread(
                self._store.read_entries, request.dataset_id, selection
            )
        except Exception as exc:
            err = _request_error(exc, "GetEntries")
            yield dataset_pb2.GetEntriesChunk(error=error_to_proto(err))
            return
        try:
            batches = snapshot.batches()
            while batch := await asyncio.to_thread(next, batches, None):
                for part in batch:
                    if part.start == 0:
                        yield dataset_pb2.GetEntriesChunk(
                            key=part.key, index=part.index, byte_size=part.size, data=part.data
                        )
                    else:
                        yield dataset_pb2.GetEntriesChunk(data=part.data)
        finally:
            snapshot.close()

    async def RemoveEntries(
        self, request: dataset_pb2.RemoveEntriesRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.EmptyResponse:
        try:
            rules.DATASET_ID.check("datasetId", request.dataset_id)
            await self._check(request.dataset_id)
            selection = _selection(request.entries, request.HasField("entries"))
            await asyncio.to_thread(self._store.remove_entries, request.dataset_id, selection)
        except Exception as exc:
            return empty_error(_request_error(exc, "RemoveEntries"))
        return empty_ok()

    async def DeleteDataset(
        self, request: dataset_pb2.DatasetRef, context: grpc.aio.ServicerContext
    ) -> common_pb2.EmptyResponse:
        try:
            rules.DATASET_ID.check("datasetId", request.dataset_id)
            await self._check(request.dataset_id)
            await asyncio.to_thread(self._store.delete, request.dataset_id)
        except Exception as exc:
            return empty_error(_request_error(exc, "DeleteDataset"))
        return empty_ok()


async def _receive(request_iterator: AsyncIterator[AddEntriesMessage], pending: PendingAdd) -> None:
    """The chunks are validated and written in order, in a thread, while the next ones are
    received (``WriteBatches``: memory stays bounded, writes keep their order, a write's error
    comes before anything received after the chunk that caused it)."""
    writes = WriteBatches(pending.write_many)
    try:
        async for message in request_iterator:
            if message.HasField("header"):
                await writes.flush()  # a refused chunk before it is the answer
                raise invalid("header", "only the first message may be a header")
            chunk = message.chunk
            if chunk:
                await writes.add(chunk)
        await writes.flush()
    finally:
        await writes.settle()


def _request_error(exc: Exception, rpc: str) -> RequestError:
    """The refusal itself, or ``unknown`` (logged with an id) for an internal fault."""
    if isinstance(exc, RequestError):
        return exc
    log_id = uuid.uuid4().hex[:12]
    log.error("Dataset.%s failed with an internal error [log id %s]", rpc, log_id, exc_info=exc)
    return InternalError(log_id)


def _keys_from_proto(keys: Sequence[dataset_pb2.DatasetKey]) -> list[KeyDef]:
    out = []
    for i, k in enumerate(keys):
        if k.rules.shape and not k.rules.has_shape:
            raise invalid(
                f"keys[{i}].rules.hasShape", "a shape is given but hasShape is false; set both"
            )
        shape = tuple(k.rules.shape) if k.rules.has_shape else None
        out.append(KeyDef(k.name, k.required, KeyRules(shape, tuple(k.rules.allowed_types))))
    return out


def _selection(entries: dataset_pb2.EntrySelection, given: bool) -> EntryRange | list[int]:
    kind = entries.WhichOneof("selection") if given else None
    if kind == "range":
        return EntryRange(entries.range.start, entries.range.end)
    if kind == "indexes":
        return list(entries.indexes.indexes)
    raise invalid("entries", "give a range {start, end} or a list of indexes")


def _info_to_proto(info: DatasetInfo) -> dataset_pb2.DatasetInfo:
    return dataset_pb2.DatasetInfo(
        id=info.id,
        name=info.name,
        description=info.description,
        created_at=unix_ms(info.created_at),
        keys=[
            dataset_pb2.DatasetKey(
                name=k.name,
                required=k.required,
                rules=dataset_pb2.KeyRules(
                    shape=k.rules.shape or (),
                    has_shape=k.rules.shape is not None,
                    allowed_types=k.rules.allowed_types,
                ),
            )
            for k in info.keys
        ],
        entries=info.entries,
        byte_size=info.byte_size,
        dataset_version_id=info.version_id,
    )
