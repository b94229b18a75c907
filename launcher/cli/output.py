"""What the command line prints: JSON of results, and the live phases of a createState job."""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any, TextIO

import numpy

from runtime.tensor import Media, Tensor


def jsonable(value: Any) -> Any:
    """Results as JSON values: bytes as base64 text; tensors as ``{"type", "shape", "value"}``
    where ``value`` is the nested list of elements (base64 text for binary elements, and
    ``{"format", "data"}`` for media)."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Tensor):
        return {"type": value.type(), "shape": list(value.shape()), "value": _elements(value)}
    return value


def _elements(tensor: Tensor) -> Any:
    array = tensor.numpy()
    if array.dtype != numpy.dtype(object):
        return array.tolist()
    flat = [
        {"format": v.format, "data": jsonable(v.data)} if isinstance(v, Media) else jsonable(v)
        for v in array.ravel().tolist()
    ]
    return numpy.array(flat, dtype=object).reshape(array.shape).tolist() if flat else []


def dumps(response: dict[str, Any]) -> str:
    return json.dumps(jsonable(response), indent=2)


def exit_code(response: dict[str, Any]) -> int:
    """0 for a result, 1 for an ``error`` or a ``result.failed`` outcome."""
    if "error" in response or "failed" in response.get("result", {}):
        return 1
    return 0


def describe_outcome(response: dict[str, Any]) -> str:
    """One person-readable paragraph for a createState response."""
    if "error" in response:
        error = response["error"]
        details = "".join(f"\n  {k}: {v}" for k, v in error.items() if k != "code")
        return f"error: {error['code']}{details}"
    result = response["result"]
    if "success" in result:
        success = result["success"]
        total = seconds(success["durations"]["total"])
        return f"state {success['stateId']} created in {total:.2f} s"
    failed = result["failed"]
    error = failed["error"]
    total = seconds(failed["durations"]["total"])
    text = f"state creation failed after {total:.2f} s: {error['code']}"
    extra = {k: v for k, v in error.items() if k not in ("code", "exceptionDetails")}
    text += "".join(f"\n  {k}: {v}" for k, v in extra.items())
    if "exceptionDetails" in error:
        text += "\n" + error["exceptionDetails"].rstrip("\n")
    return text


def seconds(milliseconds: int) -> float:
    """A duration of the API (integer milliseconds) in seconds, for people to read."""
    return milliseconds / 1000


class PhaseDisplay:
    """Shows createState phases as they happen.

    On a terminal: one line rewritten in place (finished phases with their durations, the
    running phase with its elapsed time, ticking). Elsewhere: one plain line per finished phase.
    A job that failed shows its last phase as failed, not finished (``close(failed=True)``);
    ``note`` prints a line (the model's output) above the phases.
    """

    TICK_SECONDS = 0.1

    def __init__(self, out: TextIO, live: bool) -> None:
        self._out = out
        self._live = live
        self._lock = threading.Lock()
        self._finished: list[str] = []
        self._running = "waiting"
        self._since = time.monotonic()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        #: Off a terminal, the last finished phase waits to be printed: it may have failed.
        self._held: tuple[str, float] | None = None
        if live:
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()

    def event(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._print_held(failed=False)
            if event["event"] == "phaseStarted":
                self._running, self._since = event["phase"], time.monotonic()
            else:
                took = seconds(event["duration"])
                self._finished.append(f"{event['phase']} {took:.3f} s")
                self._running = ""
                if not self._live:
                    self._held = (event["phase"], took)
            self._draw()

    def note(self, text: str) -> None:
        """A line above the phases (on a terminal the phase line is drawn again below it)."""
        with self._lock:
            if self._live:
                self._out.write("\r\x1b[2K")
            self._print_held(failed=False)
            print(text, file=self._out, flush=True)
            self._draw()

    def _print_held(self, failed: bool) -> None:
        if self._held is not None:
            phase, took = self._held
            self._held = None
            state = "failed after" if failed else "finished in"
            print(f"{phase} {state} {took:.3f} s", file=self._out, flush=True)

    def close(self, failed: bool = False, at: str | None = None) -> None:
        """Stop ticking; on a terminal, leave the phases on their line. ``failed``: the job
        failed, in phase ``at`` (default: its last), shown as failed, not finished."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        with self._lock:
            last = self._running or (self._held[0] if self._held else None)
            if failed and at is None:
                at = last or (self._finished[-1].split(" ")[0] if self._finished else None)
            if self._live:
                if failed and at is not None:
                    if self._running == at:
                        self._finished.append(f"{at} failed")
                    elif self._finished and self._finished[-1].startswith(f"{at} "):
                        self._finished[-1] = self._finished[-1].replace(" ", " failed after ", 1)
                    else:
                        self._finished.append(f"{at} failed")
                self._running = ""
                self._draw()
                self._out.write("\n")
                self._out.flush()
                return
            held_failed = failed and self._held is not None and self._held[0] == at
            self._print_held(held_failed)
            if failed and at is not None and not held_failed:
                print(f"{at} failed", file=self._out, flush=True)

    def _tick(self) -> None:
        while not self._stop.wait(self.TICK_SECONDS):
            with self._lock:
                self._draw()

    def _draw(self) -> None:
        if not self._live:
            return
        parts = list(self._finished)
        if self._running:
            parts.append(f"{self._running} {time.monotonic() - self._since:.1f} s ...")
        self._out.write("\r\x1b[2K" + " | ".join(parts))
        self._out.flush()
