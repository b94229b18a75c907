"""Random SIGKILLs under load: client threads keep creating states while the launcher is killed
at a random moment, again and again, each time restarted on the same root. After every restart
every acknowledged state is downloaded and hash-checked, every lost job answers (failed
``launcher_terminated``, or success with its state complete), and nothing else is visible.

``make test`` runs 8 short rounds; ``LAUNCHER_SOAK_SECONDS=300`` (``make soak``) keeps going
for that long.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from launcher.client import LauncherClient, LauncherConnectionError
from tests.support.crash import (
    big_state_keys,
    big_state_params,
    digests,
    downloaded_digests,
    echo_keys,
    echo_params,
    files_under,
    state_ids,
    state_leftovers,
    wait_no_leftover_workers,
)
from tests.support.launcher_proc import LauncherProcess
from tests.support.specs import TEMPORARY

SOAK_SECONDS = float(os.environ.get("LAUNCHER_SOAK_SECONDS", "0"))
ROUNDS = 8
THREADS = 4
MODELS = ("echo", "big_state")


@dataclass
class Ledger:
    """What the clients were told: acknowledged states, and jobs whose answer was lost."""

    acked: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    lost: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _one_job(rng: random.Random) -> tuple[str, list[Any], dict[str, str]]:
    if rng.random() < 0.3:
        return "big_state", big_state_params(1), digests(big_state_keys(1))
    payload = np.frombuffer(rng.randbytes(rng.randrange(0, 300_000)), dtype=np.uint8)
    return "echo", echo_params(payload), digests(echo_keys(payload))


def _client_loop(address: str, seed: int, ledger: Ledger) -> None:
    """Create states until the launcher goes away."""
    rng = random.Random(seed)
    with LauncherClient(address) as client:
        while True:
            model_id, params, want = _one_job(rng)
            state_id = None
            try:
                for event in client.model.create_state_stream(
                    model_id=model_id, name="loop", params=params, execution_location=TEMPORARY
                ):
                    state_id = event.get("stateId", state_id)
                    if "event" in event:
                        continue
                    with ledger.lock:
                        if "success" in event.get("result", {}):
                            ledger.acked[state_id] = (model_id, want)  # type: ignore[index]
                        else:
                            ledger.errors.append(f"{model_id}: {event}")
            except LauncherConnectionError:
                if state_id is not None:
                    with ledger.lock:
                        ledger.lost[state_id] = (model_id, want)
                return


def _check_after_restart(
    root: Path, client: LauncherClient, ledger: Ledger, unchecked: set[str]
) -> None:
    """Lost jobs answered, states acknowledged since the last check (``unchecked``) verified,
    the visible states exactly the acknowledged ones, no temporary files."""
    for state_id, (model_id, want) in ledger.lost.items():
        answer = client.model.wait_for_state_to_be_created(model_id=model_id, state_id=state_id)
        result = answer["result"]
        if "success" in result:  # killed between the commit and the answer: must be complete
            assert downloaded_digests(client, model_id, state_id) == want
            ledger.acked[state_id] = (model_id, want)
            unchecked.discard(state_id)
        else:
            assert result["failed"]["error"] == {"code": "launcher_terminated"}, answer
            assert state_leftovers(root, state_id) == []
    ledger.lost.clear()
    for state_id in unchecked:
        model_id, want = ledger.acked[state_id]
        assert downloaded_digests(client, model_id, state_id) == want, state_id
    for model_id in MODELS:
        assert state_ids(client, model_id) == {
            s for s, (m, _) in ledger.acked.items() if m == model_id
        }
    assert files_under(root / "tmp") == []


@pytest.mark.slow  # about 30 s: nine launcher starts
def test_random_kills_under_load_lose_no_acknowledged_state(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = Path(tmp_path_factory.mktemp("kl"))
    rng = random.Random(7)
    ledger = Ledger()
    kills = 0
    started = time.monotonic()
    launcher = LauncherProcess(root)
    launcher.start()
    try:
        while kills < ROUNDS or time.monotonic() - started < SOAK_SECONDS:
            before = set(ledger.acked)
            threads = [
                threading.Thread(target=_client_loop, args=(launcher.address, rng.random(), ledger))
                for _ in range(THREADS)
            ]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.3, 2.0))
            launcher.stop(signal.SIGKILL)
            killed = launcher.pid
            kills += 1
            for t in threads:
                t.join(30)
                assert not t.is_alive(), "a client hung on a dead launcher"
            assert ledger.errors == []

            # The restarted launcher is checked, then serves the next round.
            launcher = LauncherProcess(root)
            launcher.start()
            with LauncherClient(launcher.address) as client:
                _check_after_restart(root, client, ledger, set(ledger.acked) - before)
            assert wait_no_leftover_workers(root, killed, launcher.pid) == []
        with LauncherClient(launcher.address) as client:
            for state_id, (model_id, want) in ledger.acked.items():
                assert downloaded_digests(client, model_id, state_id) == want, state_id
    finally:
        launcher.stop()
    print(f"\nrandom kills survived: {kills}, acknowledged states intact: {len(ledger.acked)}")
    assert ledger.acked, "no job ever finished between kills: the rounds are too short"
