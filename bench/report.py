"""Figures (a measurement beside its reference), targets, the printed table and the JSON file."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class Target:
    """A bound on the ratio (figure / reference) or on the figure itself."""

    on: Literal["ratio", "value"]
    op: Literal["<=", ">="]
    bound: float

    def met(self, value: float, ratio: float) -> bool:
        x = ratio if self.on == "ratio" else value
        return x <= self.bound if self.op == "<=" else x >= self.bound

    def __str__(self) -> str:
        suffix = "x" if self.on == "ratio" else ""
        return f"{self.op} {self.bound:g}{suffix}"


@dataclass
class Figure:
    """One measured figure beside a reference measured in the same run.

    ``ratio`` is always value / reference, so a time target reads "<= 5x" and a throughput
    target ">= 0.5x".
    """

    name: str
    value: float
    unit: str
    reference_name: str
    reference: float
    target: Target | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    failures: int = 0  # jobs that failed along the way (not in the figure; see detail)

    @property
    def ratio(self) -> float:
        return self.value / self.reference if self.reference else float("inf")

    @property
    def status(self) -> str:
        if self.target is None:
            return "-"
        return "pass" if self.target.met(self.value, self.ratio) else "miss"

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["target"] = str(self.target) if self.target else None
        out["ratio"] = self.ratio
        out["status"] = self.status
        return out


def _num(x: float) -> str:
    if x == 0 or 0.01 <= abs(x) < 100000:
        return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"
    return f"{x:.2e}"


def render_table(figures: list[Figure], errors: dict[str, str]) -> str:
    header = ("figure", "value", "reference", "ratio", "target", "result")
    rows = [
        (
            f.name,
            f"{_num(f.value)} {f.unit}",
            f"{f.reference_name} {_num(f.reference)} {f.unit}",
            f"{f.ratio:.3g}x",
            str(f.target) if f.target else "-",
            f"{f.status} ({f.failures} jobs failed)" if f.failures else f.status,
        )
        for f in figures
    ]
    rows += [(name, "ERROR", message[:60], "", "", "error") for name, message in errors.items()]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    out = [line, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), line]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    out.append(line)
    return "\n".join(out)


def machine() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def write_json(
    path: Path,
    figures: list[Figure],
    errors: dict[str, str],
    meta: dict[str, Any],
) -> None:
    document = {
        **meta,
        "machine": machine(),
        "figures": [f.to_json() for f in figures],
        "errors": errors,
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
