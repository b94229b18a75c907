"""Serving a call's params to the worker: order, shuffles and provide-data frames."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from launcher.params import ParamSource
from launcher.worker.frames import ProtocolViolation
from runtime import protocol

CHUNK = 1 << 20


@dataclass
class ServedParam:
    """A param as the worker sees it: a source plus the current (possibly shuffled) order."""

    source: ParamSource
    order: np.ndarray | None = None  # None: physical order

    def physical(self, index: int) -> int:
        return index if self.order is None else int(self.order[index])


@dataclass
class DataServer:
    """The params of one call, by the dataset names given to the worker."""

    params: dict[str, ServedParam] = field(default_factory=dict)
    rng: np.random.Generator = field(default_factory=np.random.default_rng)

    def add(self, dataset: str, source: ParamSource) -> dict[str, Any]:
        """Register a source; returns the PARAM handle of the protocol (without ``name``)."""
        self.params[dataset] = ServedParam(source)
        return {
            "dataset": dataset,
            "amount": source.amount,
            "totalByteSize": source.total_byte_size,
        }

    def shuffle(self, body: dict[str, Any]) -> None:
        names = body.get("datasets")
        if not isinstance(names, list) or not names or len(names) > len(self.params):
            raise ProtocolViolation(
                "shuffle: 'datasets' must be a non-empty list of known datasets"
            )
        served = []
        for name in names:
            if not isinstance(name, str) or name not in self.params:
                raise ProtocolViolation(f"shuffle of an unknown dataset {name!r}")
            served.append(self.params[name])
        amount = served[0].source.amount
        if any(p.source.amount != amount for p in served):
            raise ProtocolViolation("shuffle of datasets with different amounts")
        perm = self.rng.permutation(amount)
        for p in {id(p): p for p in served}.values():
            p.order = perm if p.order is None else p.order[perm]

    def check_request(self, body: dict[str, Any]) -> tuple[int, ServedParam, int, int]:
        """Validate a requestData event: (request id, param, start, count)."""
        request_id = body.get("requestId")
        name = body.get("dataset")
        start = body.get("startIndex")
        amount = body.get("amount")
        if not isinstance(request_id, int) or not 0 <= request_id < 1 << 32:
            raise ProtocolViolation("requestData: 'requestId' must be a u32")
        if not isinstance(name, str) or name not in self.params:
            raise ProtocolViolation(f"requestData for an unknown dataset {name!r}")
        param = self.params[name]
        size = param.source.amount
        if not isinstance(start, int) or isinstance(start, bool) or not 0 <= start < max(size, 1):
            raise ProtocolViolation(f"requestData: startIndex {start!r} outside 0..{size}")
        if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
            raise ProtocolViolation(f"requestData: amount {amount!r} is not a count")
        count = max(0, min(amount, size - start))
        return request_id, param, start, count


async def send_elements(
    writer: asyncio.StreamWriter, request_id: int, param: ServedParam, start: int, count: int
) -> None:
    """Write one provide-data frame, streaming each element from its file."""
    src = param.source
    writer.write(protocol.provide_data_header(request_id, count))
    for i in range(start, start + count):
        j = param.physical(i)
        offset, length = int(src.offsets[j]), int(src.lengths[j])
        writer.write(protocol.blob_header(length))
        while length:
            n = min(length, CHUNK)
            data = os.pread(src.fd, n, offset)
            if not data:
                raise OSError(f"param {src.name!r}: its file ended early")
            writer.write(data)
            offset += len(data)
            length -= len(data)
            await writer.drain()
    await writer.drain()
