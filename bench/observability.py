"""Measurement: what job logs, per-job log lines and metrics cost a warm createState.

Two real launchers side by side, one as served by default (job logs, the INFO line per job,
metrics scraped now and then) and one with ``--observability off --log-level warning``; the
same trivial model on a persistent launcher (warm session) in each, calls alternated in small
rounds so that drift on a shared machine hits both alike. Two processes side by side on a
small machine are not alike (which cores their threads share, what their caches hold): a
pair's ratio varies by a few percent either way with the same settings on both. So the
figure pools ``PAIRS`` fresh pairs, each measured alike: the p50 with everything on;
reference: the p50 with it off; target within 5%.
"""

from __future__ import annotations

import re
import time
import urllib.request

from bench.common import Settings, median, percentile, running_launcher
from bench.create_state import Series, _warm_up, persistent_location
from bench.report import Figure, Target
from launcher.client import LauncherClient

ROUND = 5
PAIRS = 6


def _metrics_url(log: str) -> str | None:
    found = re.search(r"launcher metrics on (http://\S+/metrics)", log)
    return found.group(1) if found else None


def _pair(rounds: int, on: Series, off: Series) -> tuple[float, int]:
    """One fresh pair of launchers, measured alike; returns the pair's ratio and scrapes."""
    on_args = ["--metrics", "127.0.0.1:0"]
    off_args = ["--observability", "off", "--log-level", "warning"]
    pair_on, pair_off = Series(), Series()
    with (
        running_launcher(on_args) as on_proc,
        running_launcher(off_args) as off_proc,
        LauncherClient(on_proc.address, timeout=60) as on_client,
        LauncherClient(off_proc.address, timeout=60) as off_client,
    ):
        on_where = persistent_location(on_client)
        off_where = persistent_location(off_client)
        _warm_up(on_client, on_where, 3)
        _warm_up(off_client, off_where, 3)
        deadline = time.monotonic() + 10
        url = None
        while url is None and time.monotonic() < deadline:
            url = _metrics_url(on_proc.log())
            time.sleep(0.05)
        scrapes = 0
        for i in range(rounds):
            first, second = (pair_on, pair_off) if i % 2 == 0 else (pair_off, pair_on)
            for series in (first, second):
                if series is pair_on:
                    series.run(on_client, on_where, ROUND)
                else:
                    series.run(off_client, off_where, ROUND)
            if url is not None and i % 2 == 1:  # a scraper polls, as Prometheus would
                with urllib.request.urlopen(url, timeout=10) as response:
                    response.read()
                scrapes += 1
    for mine, pooled in ((pair_on, on), (pair_off, off)):
        pooled.times += mine.times
        pooled.durations += mine.durations
        pooled.failures += mine.failures
    return median(pair_on.times) / median(pair_off.times), scrapes


def measure(settings: Settings) -> list[Figure]:
    rounds = settings.count(40, 2)
    pairs = settings.count(PAIRS, 1)
    on, off = Series(), Series()
    ratios, scrapes = [], 0
    for _ in range(pairs):
        ratio, scraped = _pair(rounds, on, off)
        ratios.append(round(ratio, 3))
        scrapes += scraped
    on_p50, off_p50 = median(on.times) * 1000, median(off.times) * 1000
    return [
        Figure(
            "warm createState p50, job logs + metrics on",
            on_p50,
            "ms",
            "the same with them off",
            off_p50,
            Target("ratio", "<=", 1.05),
            {
                **on.detail(),
                "off": off.detail(),
                "on_p99_ms": percentile(on.times, 99) * 1000,
                "off_p99_ms": percentile(off.times, 99) * 1000,
                "metrics_scrapes": scrapes,
                "ratio_of_each_pair": ratios,
            },
            len(on.failures) + len(off.failures),
        )
    ]
