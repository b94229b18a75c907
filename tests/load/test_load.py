"""Load: many concurrent clients mixing successes, model failures, cancellations and a few
32 MiB params against one launcher. Every call gets exactly one answer, no state is lost or
duplicated, and the launcher's memory and open files stay bounded.

``make test`` runs 150 calls; ``LAUNCHER_SOAK_SECONDS=300`` (``make soak``) keeps calling for
that long.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from launcher.client import LauncherClient
from tests.support.crash import files_under
from tests.support.launcher_proc import running_launcher
from tests.support.memwatch import peak_rss
from tests.support.specs import TEMPORARY

SOAK_SECONDS = float(os.environ.get("LAUNCHER_SOAK_SECONDS", "0"))
THREADS = 16
CALLS = 150
BIG_CALLS = 4
BIG_BYTES = 32 << 20
PEAK_GROWTH_MIB = 300
RSS_GROWTH_MIB = 150
FDS_GROWTH = 16
# kind -> the model it runs and the outcome it must end with
KINDS = {
    "hello": ("hello", "success"),
    "echo": ("echo", "success"),
    "big": ("echo", "success"),
    "raise": ("raise_create", "exception"),
    "cancel": ("sleeper", "cancelled"),
}


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.outcomes: Counter[str] = Counter()
        self.states: dict[str, list[str]] = {}
        self.problems: list[str] = []

    def add(self, kind: str, answers: list[dict[str, Any]]) -> None:
        model_id, want = KINDS[kind]
        with self.lock:
            if len(answers) != 1:
                self.problems.append(f"{kind}: {len(answers)} answers: {answers}")
                return
            result = answers[0].get("result", {})
            if "success" in result:
                got = "success"
                self.states.setdefault(model_id, []).append(result["success"]["stateId"])
            else:
                got = result.get("failed", {}).get("error", {}).get("code", str(answers[0]))
            self.outcomes[f"{kind}:{got}"] += 1
            if got != want:
                self.problems.append(f"{kind}: expected {want}, got {answers[0]}")


def _one_call(client: LauncherClient, kind: str, seed: int, tally: Tally) -> None:
    model_id, _ = KINDS[kind]
    params: list[dict[str, Any]] = []
    if kind == "echo":
        size = random.Random(seed).randrange(0, 200_000)
        params = [{"name": "x", "data": [np.full(size, seed % 251, dtype=np.uint8)]}]
    elif kind == "big":
        params = [{"name": "x", "data": [np.zeros(BIG_BYTES, dtype=np.uint8)]}]
    answers = []
    cancelled = False
    for event in client.model.create_state_stream(
        model_id=model_id, name=kind, params=params, execution_location=TEMPORARY
    ):
        if "event" not in event:
            answers.append(event)
        elif kind == "cancel" and not cancelled and event["phase"] == "createState":
            cancelled = True
            res = client.model.cancel_create_state(model_id=model_id, state_id=event["stateId"])
            assert res == {"result": {}}, res
    tally.add(kind, answers)


def _kinds(rng: random.Random, count: int) -> list[str]:
    mix = ["hello"] * 4 + ["echo"] * 4 + ["raise"] * 2 + ["cancel"] * 2
    kinds = ["big"] * BIG_CALLS + [rng.choice(mix) for _ in range(count - BIG_CALLS)]
    rng.shuffle(kinds)
    return kinds


def test_many_concurrent_clients_each_get_one_answer_and_no_state_is_lost(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = Path(tmp_path_factory.mktemp("ld"))
    rng = random.Random(11)
    tally = Tally()
    with running_launcher(root) as launcher, LauncherClient(launcher.address) as client:
        warm = client.model.create_state(
            model_id="hello", name="warm", params=[], execution_location=TEMPORARY
        )
        tally.states["hello"] = [warm["result"]["success"]["stateId"]]
        process = psutil.Process(launcher.pid)
        fds_before = process.num_fds()
        started = time.monotonic()
        calls = 0
        with peak_rss(launcher.pid) as rss, ThreadPoolExecutor(THREADS) as pool:
            while calls == 0 or time.monotonic() - started < SOAK_SECONDS:
                batch = _kinds(rng, CALLS)
                futures = [
                    pool.submit(_one_call, client, kind, rng.randrange(1 << 30), tally)
                    for kind in batch
                ]
                for future in futures:
                    future.result(timeout=120)
                calls += len(batch)
        elapsed = time.monotonic() - started
        rss_after = process.memory_info().rss

        assert tally.problems == []
        for model_id in ("hello", "echo", "raise_create", "sleeper"):
            listed = client.model.get_models(filter={"ids": [model_id]})["result"]["models"][0]
            ids = [s["id"] for s in listed["states"]]
            created = tally.states.get(model_id, [])
            assert len(set(created)) == len(created), "a state id was answered twice"
            assert sorted(ids) == sorted(created), f"{model_id}: states lost or extra"
        assert files_under(root / "tmp") == []
        assert rss.growth_mib < PEAK_GROWTH_MIB, f"peak RSS grew by {rss.growth_mib:.0f} MiB"
        assert (rss_after - rss.before) / (1 << 20) < RSS_GROWTH_MIB
        assert process.num_fds() - fds_before < FDS_GROWTH
    print(
        f"\nload: {calls} calls from {THREADS} threads in {elapsed:.1f} s "
        f"({calls / elapsed:.1f}/s), peak RSS growth {rss.growth_mib:.0f} MiB, "
        f"outcomes {dict(tally.outcomes)}"
    )
