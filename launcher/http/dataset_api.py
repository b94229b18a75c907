"""``/v0/Dataset/<method>``: the platform's Dataset methods on the Dataset servicer.

The platform sends ``addEntries`` blobs entry-major over the sorted key names and reads
``getEntries`` blobs index-major; the servicer streams key-major. With one key the orders
agree and bytes pass straight through; with more, they are reordered through a spool file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from launcher.client import responses as resp
from launcher.client.requests import (
    dataset_keys_to_proto,
    entries_to_proto,
    filter_ids,
    need_str,
    page,
    str_list,
)
from launcher.errors import RequestError, invalid
from launcher.http import platform
from launcher.http.call import Blob, Call, Handler, Reply, answer, ok
from launcher.http.spool import Spool
from launcher.v1 import dataset_pb2

DATASET = "Dataset"
#: The platform's bound: an addEntries request carries at most 255 blobs.
MAX_BLOBS = 255


def _dataset_id(call: Call) -> str:
    return need_str(call.params.get("datasetId"), "datasetId")


async def _info(call: Call, dataset_id: str) -> dataset_pb2.DatasetInfo | RequestError:
    """The dataset as the servicer lists it (through the same access checks)."""
    request = dataset_pb2.GetDatasetsRequest(ids=[dataset_id], limit=1)
    response = await call.bridge.unary(DATASET, "GetDatasets", request, call.bearer)
    if response.WhichOneof("outcome") == "error":
        return RequestError(**resp.error_dict(response.error))
    if not response.result.datasets:
        return RequestError("dataset_not_found")
    return response.result.datasets[0]


async def _check_version(call: Call, dataset_id: str) -> RequestError | None:
    wanted = call.params.get("datasetVersionId")
    if wanted is None:
        return None
    need_str(wanted, "datasetVersionId")
    info = await _info(call, dataset_id)
    if isinstance(info, RequestError):
        return info
    if info.dataset_version_id != wanted:
        return RequestError("incorrect_version_id")
    return None


async def create_dataset(call: Call) -> Reply:
    request = dataset_pb2.CreateDatasetRequest(
        name=need_str(call.params.get("name"), "name"),
        description=need_str(call.params.get("description", ""), "description"),
        keys=dataset_keys_to_proto(call.params.get("keys")),
    )
    response = await call.bridge.unary(DATASET, "CreateDataset", request, call.bearer)
    return answer(
        resp.outcome(
            response,
            lambda r: {"datasetId": r.dataset_id, "datasetVersionId": r.dataset_version_id},
        ),
        lambda r: r,
    )


async def add_entries(call: Call) -> Reply:
    dataset_id = _dataset_id(call)
    names = sorted(str_list(call.params.get("keys"), "keys"))
    if not names:
        raise invalid("keys", "a dataset entry has at least one key")
    if len(set(names)) != len(names):
        raise invalid("keys", "a key is named twice")
    lengths = call.frame.blob_lengths
    if len(lengths) % len(names):
        raise invalid(
            "keys", f"{len(lengths)} blobs are not a whole number of entries of {len(names)} keys"
        )
    mismatch = await _check_version(call, dataset_id)
    if mismatch is not None:
        return Reply({"error": mismatch.to_json()})
    width = len(names)
    sizes = [sum(lengths[k::width]) for k in range(width)]
    header = dataset_pb2.AddEntriesHeader(
        dataset_id=dataset_id,
        keys=[
            dataset_pb2.AddEntriesHeader.Key(key=n, byte_size=s)
            for n, s in zip(names, sizes, strict=True)
        ],
    )
    spool = Spool(call.services.spool_dir) if width > 1 else None
    try:
        requests = _add_requests(call, header, width, spool)
        response = await call.bridge.stream_in(DATASET, "AddEntries", requests, call.bearer)
    finally:
        if spool is not None:
            spool.close()
    return answer(
        resp.outcome(response, lambda r: {"newDatasetVersionId": r.dataset_version_id}),
        lambda r: r,
    )


async def _add_requests(
    call: Call, header: dataset_pb2.AddEntriesHeader, width: int, spool: Spool | None
) -> AsyncIterator[dataset_pb2.AddEntriesRequest]:
    yield dataset_pb2.AddEntriesRequest(header=header)
    count = len(call.frame.blob_lengths)
    if spool is None:
        for blob in range(count):
            async for piece in call.frame.pieces(blob):
                yield dataset_pb2.AddEntriesRequest(chunk=piece)
        return
    # Key-major from entry-major: every key after the first is spooled, then sent in turn.
    for blob in range(count):
        key = blob % width
        async for piece in call.frame.pieces(blob):
            if key == 0:
                yield dataset_pb2.AddEntriesRequest(chunk=piece)
            else:
                await spool.append(key, piece)
    for key in range(1, width):
        async for piece in spool.read(key):
            yield dataset_pb2.AddEntriesRequest(chunk=piece)


async def get_datasets(call: Call) -> Reply:
    offset, limit = page(call.params.get("offset", 0), call.params.get("limit", 20))
    flt = filter_ids(call.params.get("filter"), ("ids", "names", "searchName", "owners", "tags"))
    request = dataset_pb2.GetDatasetsRequest(offset=offset, limit=limit)
    if flt.get("ids") is not None:
        request.ids.extend(str_list(flt["ids"], "filter.ids"))
    response = await call.bridge.unary(DATASET, "GetDatasets", request, call.bearer)
    return answer(
        resp.outcome(response, resp.datasets),
        lambda r: platform.paged(r, "datasets", platform.dataset),
    )


async def get_entries(call: Call) -> Reply:
    dataset_id = _dataset_id(call)
    if "entries" not in call.params:
        raise invalid("entries", 'required: a list of indexes or {"start", "end"}')
    request = dataset_pb2.GetEntriesRequest(
        dataset_id=dataset_id, entries=entries_to_proto(call.params["entries"])
    )
    mismatch = await _check_version(call, dataset_id)
    if mismatch is not None:
        return Reply({"error": mismatch.to_json()})
    chunks = call.bridge.stream_out(DATASET, "GetEntries", request, call.bearer)
    spool = Spool(call.services.spool_dir)
    try:
        error = await _spool_entries(chunks, spool)
        if error is not None:
            spool.close()
            return Reply({"error": error})
        info = await _info(call, dataset_id)
    except BaseException:
        spool.close()
        raise
    if isinstance(info, RequestError):
        spool.close()
        return Reply({"error": info.to_json()})
    names = sorted(k.name for k in info.keys)
    indexes = sorted({index for _, index in spool.parts})
    reply = ok({"keys": names, "indexes": indexes})
    reply.blobs = _entry_blobs(spool, names, indexes)

    async def close() -> None:
        spool.close()

    reply.cleanup.append(close)
    return reply


async def _spool_entries(
    chunks: AsyncIterator[dataset_pb2.GetEntriesChunk], spool: Spool
) -> dict[str, Any] | None:
    part: tuple[str, int] | None = None
    async for chunk in chunks:
        if chunk.HasField("error"):
            return resp.error_dict(chunk.error)
        if chunk.key:
            part = (chunk.key, chunk.index)
        if part is None:
            raise RuntimeError("getEntries: data before the first entry")
        await spool.append(part, chunk.data)
    return None


async def _entry_blobs(spool: Spool, names: list[str], indexes: list[int]) -> AsyncIterator[Blob]:
    for index in indexes:
        for name in names:
            yield spool.length((name, index)), spool.read((name, index))


async def remove_entries(call: Call) -> Reply:
    dataset_id = _dataset_id(call)
    if "entries" not in call.params:
        raise invalid("entries", "required: a list of indexes")
    request = dataset_pb2.RemoveEntriesRequest(
        dataset_id=dataset_id, entries=entries_to_proto(call.params["entries"])
    )
    mismatch = await _check_version(call, dataset_id)
    if mismatch is not None:
        return Reply({"error": mismatch.to_json()})
    before = await _info(call, dataset_id)
    if isinstance(before, RequestError):
        return Reply({"error": before.to_json()})
    response = await call.bridge.unary(DATASET, "RemoveEntries", request, call.bearer)
    if response.WhichOneof("outcome") == "error":
        return Reply({"error": resp.error_dict(response.error)})
    after = await _info(call, dataset_id)
    if isinstance(after, RequestError):
        return Reply({"error": after.to_json()})
    return ok(
        {
            "newDatasetVersionId": after.dataset_version_id,
            "removedBytes": max(0, before.byte_size - after.byte_size),
            "newWaitingToRemoveBytes": 0,
            "newWaitingToRemoveAmount": 0,
        }
    )


async def delete_dataset(call: Call) -> Reply:
    request = dataset_pb2.DatasetRef(dataset_id=_dataset_id(call))
    response = await call.bridge.unary(DATASET, "DeleteDataset", request, call.bearer)
    return answer(resp.outcome(response, resp.empty), lambda r: r)


METHODS: dict[str, Handler] = {
    "createDataset": create_dataset,
    "addEntries": add_entries,
    "getDatasets": get_datasets,
    "getEntries": get_entries,
    "removeEntries": remove_entries,
    "deleteDataset": delete_dataset,
}
