"""``python -m bench``: run the measurements, print the table, write the JSON results."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import (
    bounds,
    create_state,
    dataset,
    http,
    ingest,
    observability,
    ray_cluster,
    sandbox_cost,
    throughput,
    worker_start,
)
from bench.common import Settings
from bench.report import Figure, render_table, write_json

MEASUREMENTS: dict[str, Callable[[Settings], list[Figure]]] = {
    "worker_start": worker_start.measure,
    "sandbox": sandbox_cost.measure,
    "warm": create_state.measure_warm,
    "observability": observability.measure,
    "cold": create_state.measure_cold,
    "throughput": throughput.measure,
    "ingest": ingest.measure,
    "dataset": dataset.measure,
    "http": http.measure,
    "ray": ray_cluster.measure,
    "bounds": bounds.measure,
}


def _names(text: str) -> list[str]:
    names = [n for n in text.split(",") if n]
    if not names:
        raise argparse.ArgumentTypeError(f"name at least one of: {', '.join(MEASUREMENTS)}")
    unknown = sorted(set(names) - set(MEASUREMENTS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown measurement(s) {unknown}; known: {', '.join(MEASUREMENTS)}"
        )
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="reduced counts and sizes (smoke)")
    parser.add_argument("--out", type=Path, default=Path("bench-results.json"), metavar="PATH")
    parser.add_argument(
        "--only", type=_names, default=list(MEASUREMENTS), metavar="NAME,..", help="a subset"
    )
    args = parser.parse_args(argv)
    if not args.out.parent.is_dir():
        parser.error(f"--out: the folder {args.out.parent} does not exist")
    settings = Settings(quick=args.quick)
    figures: list[Figure] = []
    errors: dict[str, str] = {}
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    for name in (n for n in MEASUREMENTS if n in args.only):
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            figures += MEASUREMENTS[name](settings)
        except Exception as e:
            traceback.print_exc()
            errors[name] = f"{type(e).__name__}: {e}"
        seconds[name] = time.perf_counter() - start
    print(render_table(figures, errors))
    write_json(
        args.out,
        figures,
        errors,
        {
            "mode": "quick" if args.quick else "full",
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": {"total": time.perf_counter() - started, **seconds},
        },
    )
    print(f"results written to {args.out}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
