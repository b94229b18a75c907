"""Request rate limits per key: a token bucket each, refilled continuously."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

_RATE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:/\s*(s|sec|second|m|min|minute|h|hour))?\s*")
_PER = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}
_PER |= {"h": 3600.0, "hour": 3600.0}


def parse_rate(text: str) -> float:
    """``N/s``, ``N/min`` or ``N/h`` (``N`` alone: per second) as requests per second."""
    match = _RATE.fullmatch(text)
    if match is None:
        raise ValueError(f"expected a rate such as 10/s, 100/min or 1000/h, got {text!r}")
    count = float(match.group(1))
    if count <= 0:
        raise ValueError(f"the rate must be positive, got {text!r}")
    return count / _PER[match.group(2) or "s"]


class TokenBucket:
    """Up to ``capacity`` calls at once, then ``rate`` calls per second."""

    def __init__(self, rate: float, capacity: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._tokens = capacity
        self._last = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class RateLimiter:
    """One bucket per key id; a burst of one second's worth of calls (at least one)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def allow(self, key_id: str, rate: float | None) -> bool:
        if rate is None:
            return True
        bucket = self._buckets.get(key_id)
        if bucket is None or bucket.rate != rate:
            bucket = TokenBucket(rate, max(1.0, rate), self._clock)
            self._buckets[key_id] = bucket
        return bucket.take()
