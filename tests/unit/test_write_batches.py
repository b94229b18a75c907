"""WriteBatches: chunks written in order, at most one batch in flight, a bounded queue behind
it, and a write's error raised before any later chunk is taken (nothing after it written)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from launcher.api.write_batches import WriteBatches


class Writer:
    """Records each batch; blocks while ``gate`` is clear; fails on chunk ``fail``."""

    def __init__(self, fail: bytes | None = None) -> None:
        self.batches: list[list[bytes]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail = fail
        self.active = 0
        self.most_active = 0
        self._lock = threading.Lock()

    def __call__(self, chunks: Sequence[bytes | memoryview]) -> None:
        with self._lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            assert self.gate.wait(10)
            batch = [bytes(c) for c in chunks]
            if self.fail is not None and self.fail in batch:
                self.batches.append(batch[: batch.index(self.fail)])
                raise ValueError(f"refused {self.fail!r}")
            self.batches.append(batch)
        finally:
            with self._lock:
                self.active -= 1

    def written(self) -> list[bytes]:
        return [c for batch in self.batches for c in batch]


def test_chunks_are_written_in_order_in_bounded_batches_one_at_a_time() -> None:
    writer = Writer()

    async def main() -> None:
        writes = WriteBatches(writer, max_bytes=10, max_chunks=3)
        writer.gate.clear()  # the first write blocks: the rest queue behind it
        await writes.add(b"a")
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, writer.gate.set)
        for i in range(20):
            await writes.add(b"%02d" % i)
        await writes.flush()

    asyncio.run(main())
    assert writer.written() == [b"a"] + [b"%02d" % i for i in range(20)]
    assert writer.most_active == 1
    assert all(len(batch) <= 3 for batch in writer.batches)
    assert len(writer.batches) > 1


def test_a_chunk_is_written_at_once_when_nothing_is_in_flight() -> None:
    writer = Writer()

    async def main() -> None:
        writes = WriteBatches(writer)
        await writes.add(b"x")
        for _ in range(100):  # no more chunks come: it is written all the same
            if writer.batches:
                break
            await asyncio.sleep(0.01)
        assert writer.batches == [[b"x"]]
        await writes.flush()

    asyncio.run(main())


def test_an_error_is_raised_before_later_chunks_and_nothing_after_it_is_written() -> None:
    writer = Writer(fail=b"bad")

    async def main() -> None:
        writes = WriteBatches(writer)
        with pytest.raises(ValueError, match="refused"):
            try:
                await writes.add(b"ok")
                await writes.add(b"bad")
                for _ in range(200):
                    await writes.add(b"later")
                    await asyncio.sleep(0.005)
                await writes.flush()
            finally:
                await writes.settle()

    asyncio.run(main())
    assert writer.written() == [b"ok"]


def test_flush_raises_the_error_of_the_last_batch() -> None:
    writer = Writer(fail=b"bad")

    async def main() -> None:
        writes = WriteBatches(writer)
        await writes.add(b"bad")
        with pytest.raises(ValueError):
            await writes.flush()
        await writes.settle()

    asyncio.run(main())


def test_settle_waits_for_the_write_in_flight_and_drops_the_queue() -> None:
    writer = Writer()

    async def main() -> None:
        writes = WriteBatches(writer)
        writer.gate.clear()
        await writes.add(b"first")
        await writes.add(b"queued")
        asyncio.get_running_loop().call_later(0.1, writer.gate.set)
        await writes.settle()
        assert writer.active == 0

    asyncio.run(main())
    assert writer.written() == [b"first"]
