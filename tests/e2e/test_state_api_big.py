"""A 300 MiB state key through upload_state and download_state over a real socket, with the
launcher process's resident memory sampled (psutil, by the fixture's pid) the whole time."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import psutil

from launcher.client import LauncherClient
from tests.support.launcher_proc import LauncherProcess
from tests.support.mounting import new_model

SIZE = 300 << 20
MAX_GROWTH = 96 << 20  # a few chunks in flight; far below the key's size


class RssPeak:
    """Samples a process's RSS every 20 ms in a thread; ``peak`` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.baseline = self._process.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def write_big_file(path: Path) -> str:
    digest = hashlib.sha256()
    block = bytearray(range(256)) * 4096  # 1 MiB
    with path.open("wb") as f:
        for i in range(SIZE // len(block)):
            block[:8] = i.to_bytes(8, "little")  # no two blocks alike
            f.write(block)
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def test_300_mib_key_round_trip_with_bounded_launcher_memory(
    launcher: LauncherProcess, client: LauncherClient, tmp_path: Path
) -> None:
    model_id = new_model(launcher)
    source = tmp_path / "big.bin"
    expected = write_big_file(source)
    started = time.monotonic()
    with RssPeak(launcher.pid) as upload_rss:
        res = client.model.upload_state(
            model_id=model_id,
            name="big",
            data=[{"key": "small", "data": b"s"}, {"key": "big", "data": source}],
        )
    state_id = res["result"]["stateId"]
    [state] = client.model.get_models(filter={"ids": [model_id]})["result"]["models"][0]["states"]
    assert state["state"] == [{"key": "small", "byteSize": 1}, {"key": "big", "byteSize": SIZE}]
    source.unlink()
    with RssPeak(launcher.pid) as download_rss:
        got = client.model.download_state(
            model_id=model_id, state_id=state_id, to_dir=tmp_path / "out", keys=["big"]
        )
    [item] = got["result"]["data"]
    assert item["byteSize"] == SIZE
    assert file_sha256(Path(item["path"])) == expected
    assert upload_rss.peak - upload_rss.baseline < MAX_GROWTH, upload_rss.peak
    assert download_rss.peak - download_rss.baseline < MAX_GROWTH, download_rss.peak
    assert time.monotonic() - started < 60
