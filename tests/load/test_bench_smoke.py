"""``python -m bench``: the quick (smoke) run produces every figure; bad options are refused;
the figure arithmetic (ratio, targets, percentiles) and the table are right."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import percentile
from bench.report import Figure, Target, render_table

PROJECT = Path(__file__).resolve().parents[2]
EXPECTED = ["1. ", "2. ", "3. ", "4. ", "5. ", "6. ", "7. ", "8. ", "9. "]


def _bench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_quick_run_prints_and_records_every_measurement(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = _bench("--quick", "--out", str(out), timeout=140)
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    document = json.loads(out.read_text())
    assert document["mode"] == "quick"
    assert document["errors"] == {}
    names = [f["name"] for f in document["figures"]]
    for prefix in EXPECTED:
        assert any(n.startswith(prefix) for n in names), (prefix, names)
        assert any(line.startswith(prefix) for line in done.stdout.splitlines()), prefix
    for figure in document["figures"]:
        assert figure["value"] >= 0 and figure["reference"] > 0, figure
        assert figure["status"] in ("pass", "miss", "-"), figure
    assert document["seconds"]["total"] < 120


def test_unknown_measurement_is_refused() -> None:
    done = _bench("--only", "worker_start,nope", timeout=30)
    assert done.returncode == 2
    assert "unknown measurement(s) ['nope']" in done.stderr
    assert "worker_start" in done.stderr  # the known names are listed


def test_empty_measurement_list_is_refused() -> None:
    done = _bench("--only", ",", timeout=30)
    assert done.returncode == 2
    assert "name at least one of: worker_start" in done.stderr


def test_output_in_a_missing_folder_is_refused_before_measuring(tmp_path: Path) -> None:
    done = _bench("--out", str(tmp_path / "absent" / "r.json"), timeout=30)
    assert done.returncode == 2
    assert "does not exist" in done.stderr
    assert "bench: worker_start" not in done.stderr  # nothing was measured


def test_ratio_is_value_over_reference_and_targets_read_both_ways() -> None:
    time_figure = Figure("t", 10.0, "ms", "ref", 4.0, Target("ratio", "<=", 5))
    assert time_figure.ratio == 2.5 and time_figure.status == "pass"
    rate = Figure("r", 0.2, "GB/s", "raw", 1.0, Target("ratio", ">=", 0.5))
    assert rate.status == "miss"
    absolute = Figure("m", 70.0, "MiB", "payload", 256.0, Target("value", "<=", 64))
    assert absolute.status == "miss"
    assert Figure("n", 1.0, "ms", "ref", 1.0).status == "-"
    assert str(Target("ratio", ">=", 0.5)) == ">= 0.5x"
    assert str(Target("value", "<=", 64)) == "<= 64"


def test_table_shows_reference_ratio_failures_and_errors() -> None:
    figures = [Figure("warm p50", 12.0, "ms", "health", 1.0, Target("ratio", "<=", 5), failures=2)]
    table = render_table(figures, {"cold": "RuntimeError: boom"})
    assert "health 1 ms" in table and "12x" in table and "<= 5x" in table
    assert "miss (2 jobs failed)" in table
    assert "RuntimeError: boom" in table and "error" in table


def test_percentile_interpolates_and_refuses_no_samples() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([0.0, 10.0], 99) == pytest.approx(9.9)
    assert percentile([5.0], 99) == 5.0
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)
