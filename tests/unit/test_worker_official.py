"""The test host speaks the real protocol: it drives the official runtime (decthings-model)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.host import OFFICIAL_COMMAND, Host

MODELS = Path(__file__).parent.parent / "models" / "worker"

pytest.importorskip("decthings_model")


def test_host_drives_the_official_runtime_through_create_state(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    host = Host(tmp_path, command=OFFICIAL_COMMAND, env=env)
    try:
        assert host.initialize(MODELS / "sync_object" / "main.py") == {}
        outcome = host.create_state({})
        assert outcome.result == {}
        assert outcome.state == {"kind": b"sync object"}
        assert outcome.events[0]["params"] == {"commandId": "call-1", "names": ["kind"]}
    finally:
        host.sock.close()
        host.process.kill()
        host.process.wait(10)
