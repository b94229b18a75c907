"""A 256 MiB dataset key uploaded in 1 MiB chunks: streamed to disk, never held in memory."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest

from launcher.v1 import dataset_pb2 as pb
from tests.support.datasets import DatasetServer, key, tensors

MIB = 1 << 20
TOTAL = 256 * MIB
# Far below the 256 MiB uploaded: gRPC buffers and a few chunks in flight, not the data.
MAX_GROWTH = 64 * MIB


class PeakRss:
    """Samples this process's resident memory in the background; ``peak`` is the maximum."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def upload(dataset_id: str, tensor: bytes, count: int) -> Iterator[pb.AddEntriesRequest]:
    """The header, then ``count`` copies of ``tensor`` cut into 1 MiB chunks on the fly."""
    size = len(tensor) * count
    yield pb.AddEntriesRequest(
        header=pb.AddEntriesHeader(
            dataset_id=dataset_id, keys=[pb.AddEntriesHeader.Key(key="x", byte_size=size)]
        )
    )
    cycle = tensor * 2  # any 1 MiB window of the repeated stream lies within two copies
    for start in range(0, size, MIB):
        offset = start % len(tensor)
        yield pb.AddEntriesRequest(chunk=cycle[offset : offset + min(MIB, size - start)])


@pytest.mark.slow
def test_256_mib_key_is_streamed_to_disk_in_bounded_memory(tmp_path: Path) -> None:
    server = DatasetServer(tmp_path)
    try:
        dataset_id = server.create_ok([key("x", shape=[-1], types=["f32"])])
        # Tensors a bit over 1 MiB, so their borders drift across the chunk borders.
        tensor = tensors(np.arange(MIB // 4 + 3, dtype=np.float32))
        count = TOTAL // len(tensor)
        baseline = psutil.Process().memory_info().rss
        rss = PeakRss()
        started = time.monotonic()
        res = server.stub.AddEntries(upload(dataset_id, tensor, count))
        elapsed = time.monotonic() - started
        growth = rss.stop() - baseline
        assert res.result.dataset_version_id, res
        assert growth < MAX_GROWTH, f"memory grew by {growth / MIB:.0f} MiB"

        info = server.info(dataset_id)
        assert (info.entries, info.byte_size) == (count, count * len(tensor))
        source = server.store.open_param(dataset_id, "x", "x")
        try:
            assert source.amount == count
            assert set(source.lengths.tolist()) == {len(tensor)}
            assert source.read(0) == tensor and source.read(count - 1) == tensor
        finally:
            source.close()
        print(f"256 MiB in 1 MiB chunks: {elapsed:.1f} s, peak RSS growth {growth / MIB:.0f} MiB")
    finally:
        server.close()
