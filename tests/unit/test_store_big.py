"""Big state keys: 256 MiB streamed through a KeyWriter and read back keep memory bounded;
write throughput is printed next to a raw write+fsync of the same bytes."""

from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path

import psutil
import pytest

from launcher.store.db import Database
from launcher.store.states import StateStore

CHUNK = 1 << 20
CHUNKS = 256
MEMORY_BOUND = 16 << 20


def _raw_write_seconds(path: Path, chunk: bytes) -> float:
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        for _ in range(CHUNKS):
            os.write(fd, chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - start


def test_256_mib_key_streams_in_bounded_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = StateStore(tmp_path, Database(tmp_path / "launcher.db"))
    chunk = os.urandom(CHUNK)
    process = psutil.Process()
    rss_before = process.memory_info().rss

    tracemalloc.start()
    try:
        start = time.perf_counter()
        pending = store.begin("m", "big")
        writer = pending.key_writer("weights")
        for _ in range(CHUNKS):
            writer.write(chunk)
        writer.finish()
        record = pending.commit()
        store_seconds = time.perf_counter() - start
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()

        read_bytes = 0
        with store.open_key("m", record.id, "weights") as reader:
            for piece in reader.chunks(CHUNK):
                read_bytes += len(piece)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth = process.memory_info().rss - rss_before

    assert record.keys[0].byte_size == CHUNK * CHUNKS == read_bytes
    assert write_peak < MEMORY_BOUND, write_peak
    assert read_peak < MEMORY_BOUND, read_peak
    assert rss_growth < 4 * MEMORY_BOUND, rss_growth

    raw_seconds = _raw_write_seconds(tmp_path / "raw.bin", chunk)
    mib = CHUNK * CHUNKS / (1 << 20)
    with capsys.disabled():
        print(
            f"\nstate key write 256 MiB: store {mib / store_seconds:.0f} MiB/s "
            f"(sha256 + fsync + commit), raw write+fsync {mib / raw_seconds:.0f} MiB/s, "
            f"ratio {raw_seconds / store_seconds:.2f}; peaks write {write_peak >> 10} KiB, "
            f"read {read_peak >> 10} KiB, rss +{rss_growth >> 20} MiB"
        )
