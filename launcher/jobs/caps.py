"""Operator caps on the phase time limits a model asks for (``--max-phase-seconds``).

``model.toml`` sets ``max_durations_seconds.code_startup`` and ``.create_state``; the
operator's cap bounds both. A model asking for more is not refused: its limit is clamped to
the cap, and the launcher logs it (once per model and asked value), so a model written for
a generous host still runs, within this host's limits.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

from launcher.store.models import ModelConfig

log = logging.getLogger("launcher.jobs")

PHASES = {"code_startup": "max_code_startup", "create_state": "max_create_state"}


@dataclass(frozen=True)
class PhaseCaps:
    code_startup: float | None = None
    create_state: float | None = None

    def clamp(self, model: ModelConfig) -> ModelConfig:
        """``model`` with each phase limit at most its cap (logged when lowered)."""
        changes = {}
        for phase, field in PHASES.items():
            cap = getattr(self, phase)
            asked = getattr(model, field)
            if cap is not None and asked > cap:
                changes[field] = cap
                _log_clamp(model.model_id, phase, asked, cap)
        return dataclasses.replace(model, **changes) if changes else model


_logged: set[tuple[str, str, float, float]] = set()


def _log_clamp(model_id: str, phase: str, asked: float, cap: float) -> None:
    key = (model_id, phase, asked, cap)
    if key in _logged:
        return
    if len(_logged) > 10_000:
        _logged.clear()
    _logged.add(key)
    log.warning(
        "model %s asks for %s = %g s; capped to %g s by --max-phase-seconds",
        model_id,
        phase,
        asked,
        cap,
    )


def parse_phase_caps(text: str) -> PhaseCaps:
    """``code_startup=60,create_state=600`` (either or both), seconds > 0."""
    values: dict[str, float] = {}
    for part in text.split(","):
        name, sep, raw = part.strip().partition("=")
        name = name.strip()
        if not sep or name not in PHASES:
            raise ValueError(
                f"expected code_startup=SECONDS,create_state=SECONDS, got {part.strip()!r}"
            )
        if name in values:
            raise ValueError(f"{name} is given twice")
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{name}: {raw.strip()!r} is not a number of seconds") from None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name}: the cap must be a positive number of seconds")
        values[name] = value
    return PhaseCaps(**values)
