"""The interceptor's view of the keys: read from ``launcher.db`` at most once per ``ttl``.

Operators change keys with ``launcher keys`` while the daemon runs; the daemon sees a new
or revoked key within ``ttl`` seconds, and a call costs a dict lookup in between.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from launcher.auth.keys import ApiKey, KeyStore, hash_key

DEFAULT_TTL = 1.0


@dataclass(frozen=True)
class KeySnapshot:
    #: Authentication is on once any key exists (revoked ones count).
    enabled: bool
    by_hash: dict[str, ApiKey] = field(default_factory=dict)

    def find(self, secret: str) -> ApiKey | None:
        return self.by_hash.get(hash_key(secret))


class KeyCache:
    def __init__(self, store: KeyStore, ttl: float = DEFAULT_TTL) -> None:
        self._store = store
        self._ttl = ttl
        self._snapshot = KeySnapshot(enabled=False)
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    async def current(self) -> KeySnapshot:
        if time.monotonic() - self._loaded_at < self._ttl:
            return self._snapshot
        async with self._lock:
            if time.monotonic() - self._loaded_at >= self._ttl:
                enabled, by_hash = await asyncio.to_thread(self._store.snapshot)
                self._snapshot = KeySnapshot(enabled, by_hash)
                self._loaded_at = time.monotonic()
        return self._snapshot
