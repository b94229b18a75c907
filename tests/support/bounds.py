"""Helpers of the bounds tests: hostile model folders, and another client's latency meanwhile."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from launcher.client import LauncherClient
from tests.support.specs import TEMPORARY

#: How long another client's cheap call may take while an attack runs (generous: the machine
#: is shared; the attacks these tests replay used to take the launcher away for 8 s to forever).
CHEAP_CALL_BOUND = 2.0

HELLO_MAIN = "model = {'createModelState': lambda options: None}\n"


def make_model(root: Path, model_id: str, main_py: str = HELLO_MAIN) -> Path:
    folder = root / "models" / model_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.py").write_text(main_py)
    return folder


def create(client: LauncherClient, model_id: str, **kw: Any) -> dict[str, Any]:
    return client.model.create_state(
        model_id=model_id,
        name=kw.pop("name", "bounds"),
        params=kw.pop("params", []),
        execution_location=kw.pop("execution_location", TEMPORARY),
        **kw,
    )


def failed_code(res: dict[str, Any]) -> str:
    assert "failed" in res.get("result", {}), res
    return str(res["result"]["failed"]["error"]["code"])


def error_of(res: dict[str, Any]) -> dict[str, Any]:
    assert "error" in res, res
    return dict(res["error"])


def cheap_call_seconds(address: str) -> float:
    """One GetModels of a fresh client (its own connection), in seconds."""
    with LauncherClient(address) as other:
        start = time.monotonic()
        res = other.model.get_models()
        elapsed = time.monotonic() - start
    assert "result" in res, res
    return elapsed


class LatencyProbe:
    """Another client's cheap calls, one after another on one connection, while something else
    runs: ``worst`` is the slowest; every call must have been answered."""

    def __init__(self, address: str, limit: int = 2000) -> None:
        self.address = address
        self.limit = limit
        self.samples: list[float] = []
        self.errors: list[Any] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LatencyProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        with LauncherClient(self.address) as other:
            other.model.get_models()  # connect first: connection set-up is not the launcher's
            while not self._stop.is_set() and len(self.samples) < self.limit:
                start = time.monotonic()
                res = other.model.get_models()
                self.samples.append(time.monotonic() - start)
                if "result" not in res:
                    self.errors.append(res)
                time.sleep(0.01)

    @property
    def worst(self) -> float:
        return max(self.samples) if self.samples else 0.0
