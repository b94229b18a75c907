"""``launcher keys``: create, list, revoke on a data root; a running launcher sees changes
without a restart; bad input is refused with a clear message. Also the rate parser and
the token bucket."""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from launcher.auth.keys import parse_models
from launcher.auth.limits import RateLimiter, parse_rate
from launcher.cli import main
from launcher.client import LauncherClient
from tests.support.launcher_proc import running_launcher

Capture = pytest.CaptureFixture[str]


def keys(capsys: Capture, *argv: str) -> tuple[int, Any, str]:
    code = main(["keys", *argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the launcher did not see the key change"
        time.sleep(0.1)


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="lk-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_create_prints_the_key_once_and_stores_only_its_hash(root: Path, capsys: Capture) -> None:
    code, made, err = keys(
        capsys, "create", "ci", "--root", str(root), "--models", "a,b", "--rate", "30/min",
        "--max-stored-bytes", "1000", "--max-concurrent-jobs", "2",
    )  # fmt: skip
    assert code == 0 and "not shown again" in err
    assert made["key"].startswith("lk_") and len(made["key"]) > 40
    assert made["models"] == ["a", "b"] and made["ratePerSecond"] == 0.5
    assert made["maxStoredBytes"] == 1000 and made["maxConcurrentJobs"] == 2
    raw = (root / "launcher.db").read_bytes()
    assert made["key"].encode() not in raw
    with sqlite3.connect(root / "launcher.db") as conn:
        (stored,) = conn.execute("SELECT hash FROM api_keys").fetchone()
    assert len(stored) == 64 and stored != made["key"]
    code, listed, _ = keys(capsys, "list", "--root", str(root))
    assert code == 0 and [k["id"] for k in listed] == [made["id"]]
    assert "key" not in listed[0] and listed[0]["revokedAt"] is None
    created = listed[0]["createdAt"]  # integer Unix milliseconds, like every API timestamp
    assert type(created) is int and abs(created - time.time() * 1000) < 600_000


def test_revoke_marks_the_key_and_list_shows_it(root: Path, capsys: Capture) -> None:
    _, made, _ = keys(capsys, "create", "ops", "--root", str(root))
    assert made["models"] == "*"
    code, revoked, _ = keys(capsys, "revoke", made["id"], "--root", str(root))
    assert code == 0 and type(revoked["revokedAt"]) is int
    assert revoked["revokedAt"] >= revoked["createdAt"]
    _, listed, _ = keys(capsys, "list", "--root", str(root))
    assert listed[0]["revokedAt"] == revoked["revokedAt"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["create", "x", "--models", "a,,b"], "invalid model id"),
        (["create", "x", "--models", "../etc"], "invalid model id"),
        (["create", "x", "--rate", "fast"], "expected a rate"),
        (["create", "x", "--rate", "0/s"], "must be positive"),
        (["create", "x", "--max-concurrent-jobs", "0"], "at least 1"),
        (["create", "x", "--max-stored-bytes", "-1"], "at least 0"),
        (["create", " "], "printable characters"),
        (["create", "a\nb"], "printable characters"),
    ],
)
def test_bad_key_options_are_refused_with_a_reason(
    root: Path, capsys: Capture, argv: list[str], message: str
) -> None:
    code, out, err = keys(capsys, *argv, "--root", str(root))
    assert code == 2 and out is None and message in err


def test_revoking_an_unknown_key_or_listing_a_missing_root_fails(
    root: Path, capsys: Capture
) -> None:
    keys(capsys, "create", "x", "--root", str(root))
    code, _, err = keys(capsys, "revoke", "key_nope", "--root", str(root))
    assert code == 1 and "no key with id 'key_nope'" in err
    code, _, err = keys(capsys, "list", "--root", str(root / "missing"))
    assert code == 2 and "no launcher data root" in err


def test_a_running_launcher_sees_new_and_revoked_keys_without_restart(
    root: Path, capsys: Capture
) -> None:
    with running_launcher(root) as proc:
        with LauncherClient(proc.address) as open_client:
            assert "result" in open_client.dataset.get_datasets()
            _, made, _ = keys(capsys, "create", "late", "--root", str(root))
            eventually(lambda: "error" in open_client.dataset.get_datasets())
            assert open_client.dataset.get_datasets() == {"error": {"code": "bad_credentials"}}
        with LauncherClient(proc.address, api_key=made["key"]) as client:
            assert "result" in client.dataset.get_datasets()
            keys(capsys, "revoke", made["id"], "--root", str(root))
            eventually(lambda: "error" in client.dataset.get_datasets())
            # Revoking the last key keeps authentication on: no key opens the launcher.
            assert client.dataset.get_datasets() == {"error": {"code": "bad_credentials"}}
        with LauncherClient(proc.address) as open_client:
            assert open_client.dataset.get_datasets() == {"error": {"code": "bad_credentials"}}


@pytest.mark.parametrize(
    ("text", "per_second"),
    [("10/s", 10.0), ("5", 5.0), ("120/min", 2.0), ("36/h", 0.01), (" 1.5 / sec ", 1.5)],
)
def test_rates_are_read_per_second_minute_or_hour(text: str, per_second: float) -> None:
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["", "x/s", "10/day", "-1/s", "0", "1e3/s"])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="rate"):
        parse_rate(text)


def test_star_means_every_model() -> None:
    assert parse_models("*") is None
    assert parse_models("a, b") == frozenset({"a", "b"})


def test_the_token_bucket_allows_a_burst_then_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert [limiter.allow("k", 3.0) for _ in range(4)] == [True, True, True, False]
    now[0] += 1 / 3
    assert limiter.allow("k", 3.0) and not limiter.allow("k", 3.0)
    now[0] += 100
    assert sum(limiter.allow("k", 3.0) for _ in range(10)) == 3
    assert all(limiter.allow("other", None) for _ in range(100))
