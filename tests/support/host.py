"""A small synchronous test host: the launcher's side of the worker protocol, over a real socket.

It starts a worker process (``python -m runtime`` by default, or any command such as the
official ``python -m decthings_model``) with ``IPC_PATH`` pointing at a listening socket in a
temporary folder, sends ``initialize`` and ``callCreateModelState``, serves ``requestData`` from
in-memory lists of serialized tensors, applies ``shuffle`` permutations, and collects
``provideStateData`` blobs and the result. Everything the worker sends is recorded for tests.
"""

from __future__ import annotations

import json
import os
import random
import socket
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime import protocol

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNTIME_COMMAND = [sys.executable, "-m", "runtime"]
OFFICIAL_COMMAND = [sys.executable, "-m", "decthings_model"]


@dataclass
class Outcome:
    """Everything one ``callCreateModelState`` produced."""

    result: dict[str, Any]
    state: dict[str, bytes] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    shuffles: list[list[str]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def error(self) -> dict[str, Any] | None:
        return self.result.get("error")


class Host:
    """One worker process and the host end of its socket."""

    def __init__(
        self,
        tmp_path: Path,
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 20.0,
        seed: int = 1,
    ) -> None:
        self.socket_path = str(tmp_path / "ipc.sock")
        self.stdout_path = tmp_path / "worker.stdout"
        self.stderr_path = tmp_path / "worker.stderr"
        self._random = random.Random(seed)
        self.datasets: dict[str, list[bytes]] = {}
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.socket_path)
        listener.listen(1)
        listener.settimeout(timeout)
        worker_env = dict(os.environ if env is None else env)
        worker_env["IPC_PATH"] = self.socket_path
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                command or RUNTIME_COMMAND, env=worker_env, cwd=REPO_ROOT, stdout=out, stderr=err
            )
        try:
            self.sock, _ = listener.accept()
        finally:
            listener.close()
        self.sock.settimeout(timeout)

    # -- commands ------------------------------------------------------------------------------

    def send_command(self, method: str, params: dict[str, Any]) -> None:
        self.sock.sendall(protocol.encode_command(method, params))

    def initialize(self, main_py: Path) -> dict[str, Any]:
        """``initialize``; returns the params of ``modelSessionInitialized``."""
        self.send_command("initialize", {"path": str(main_py)})
        message = self.read_message()
        assert message.get("event") == "modelSessionInitialized", message
        return message["params"]

    def create_state(
        self,
        params: dict[str, list[bytes]],
        other_models: dict[str, tuple[str, dict[str, bytes]]] | None = None,
        command_id: str = "call-1",
    ) -> Outcome:
        """Run ``callCreateModelState`` to its result, serving data on the way.

        ``params``: name -> list of serialized tensors. ``other_models``: id -> (mount path,
        key -> bytes).
        """
        wire_params = [self._add_dataset(f"param:{name}", name, v) for name, v in params.items()]
        wire_others = [
            {
                "id": model_id,
                "mountPath": mount,
                "state": [self._add_dataset(f"state:{model_id}:{k}", k, [v]) for k, v in s.items()],
            }
            for model_id, (mount, s) in (other_models or {}).items()
        ]
        self.send_command(
            "callCreateModelState",
            {"id": command_id, "params": wire_params, "otherModels": wire_others},
        )
        return self.serve_until_result(command_id)

    def serve_until_result(self, command_id: str) -> Outcome:
        outcome = Outcome(result={})
        while True:
            kind, message, blobs = self.read_frame()
            if kind == protocol.DATA_EVENT:
                self._on_data_event(message, outcome)
            elif message.get("event") == "provideStateData":
                assert message["params"]["commandId"] == command_id, message
                for name, blob in zip(message["params"]["names"], blobs, strict=True):
                    assert name not in outcome.state, f"key {name!r} provided twice"
                    outcome.state[name] = blob
                outcome.events.append(message)
            elif "event" in message:
                outcome.events.append(message)
            else:
                assert message.get("id") == command_id, message
                outcome.result = message["result"]
                return outcome

    def _add_dataset(self, dataset: str, name: str, blobs: list[bytes]) -> dict[str, Any]:
        self.datasets[dataset] = list(blobs)
        return {
            "name": name,
            "dataset": dataset,
            "amount": len(blobs),
            "totalByteSize": sum(len(b) for b in blobs),
        }

    def _on_data_event(self, event: dict[str, Any], outcome: Outcome) -> None:
        if event["event"] == "requestData":
            outcome.requests.append(event)
            rows = self.datasets[event["dataset"]]
            start = event["startIndex"]
            answer = rows[start : start + event["amount"]]
            self.sock.sendall(b"".join(protocol.encode_provide_data(event["requestId"], answer)))
        elif event["event"] == "shuffle":
            names = event["datasets"]
            outcome.shuffles.append(names)
            sizes = {len(self.datasets[n]) for n in names}
            assert len(sizes) == 1, f"shuffle of datasets of different sizes: {names}"
            order = list(range(sizes.pop()))
            self._random.shuffle(order)
            for name in names:
                rows = self.datasets[name]
                self.datasets[name] = [rows[i] for i in order]
        else:
            raise AssertionError(f"unknown data event {event}")

    # -- frames from the worker ----------------------------------------------------------------

    def read_frame(self) -> tuple[int, dict[str, Any], list[bytes]]:
        """(kind, JSON, blobs) of the worker's next frame."""
        kind = self._read_exact(1)[0]
        if kind == protocol.DATA_EVENT:
            (length,) = struct.unpack(">Q", self._read_exact(8))
            return kind, json.loads(self._read_exact(length)), []
        assert kind == protocol.MESSAGE, f"unknown frame kind {kind}"
        count, length = struct.unpack(">IQ", self._read_exact(12))
        message = json.loads(self._read_exact(length))
        blobs = []
        for _ in range(count):
            (size,) = struct.unpack(">Q", self._read_exact(8))
            blobs.append(self._read_exact(size))
        self._read_exact(1)
        return kind, message, blobs

    def read_message(self) -> dict[str, Any]:
        kind, message, _ = self.read_frame()
        assert kind == protocol.MESSAGE, message
        return message

    def _read_exact(self, n: int) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.sock.recv_into(view[got:])
            if k == 0:
                raise EOFError(f"worker closed the socket; stderr: {self.stderr()}")
            got += k
        return bytes(buf)

    # -- the process ---------------------------------------------------------------------------

    def close(self, timeout: float = 10.0) -> int:
        """Close the socket and return the worker's exit status."""
        self.sock.close()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")
