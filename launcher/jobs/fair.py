"""Job slots shared fairly between tenants: round-robin across tenants, FIFO within one.

``acquire(tenant)`` waits for one of ``capacity`` slots. Whenever a slot frees, it goes to
the first waiting job of the next tenant in turn (a tenant that was just served goes to the
back), so one tenant's backlog never starves another's. A tenant may also hold at most
``per_tenant`` slots at once (None: no cap); a tenant at its cap is skipped while others
wait. Jobs without a tenant (a launcher without keys) share one queue and are never capped.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict, deque

#: The queue of jobs without a tenant (no keys in use).
_OPEN = ""


class FairSlots:
    def __init__(self, capacity: int, per_tenant: int | None = None) -> None:
        if capacity < 1:
            raise ValueError("at least one job slot")
        if per_tenant is not None and per_tenant < 1:
            raise ValueError("a per-tenant cap is at least 1")
        self.capacity = capacity
        self.per_tenant = per_tenant
        self._free = capacity
        self.running: Counter[str] = Counter()
        #: Waiting jobs per tenant, tenants in their turn order.
        self._waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()

    def _cap(self, tenant: str) -> int:
        if tenant == _OPEN or self.per_tenant is None:
            return self.capacity
        return self.per_tenant

    def waiting(self, tenant: str | None = None) -> int:
        if tenant is None:
            return sum(len(q) for q in self._waiting.values())
        return len(self._waiting.get(tenant or _OPEN, ()))

    async def acquire(self, tenant: str | None) -> None:
        name = tenant or _OPEN
        if not self._waiting and self._free > 0 and self.running[name] < self._cap(name):
            self._take(name)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(name, deque()).append(future)
        self._dispatch()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(tenant)  # granted as it was cancelled: hand the slot on
            else:
                queue = self._waiting.get(name)
                if queue is not None and future in queue:
                    queue.remove(future)
                    if not queue:
                        del self._waiting[name]
            raise

    def release(self, tenant: str | None) -> None:
        name = tenant or _OPEN
        self.running[name] -= 1
        if self.running[name] <= 0:
            del self.running[name]
        self._free += 1
        self._dispatch()

    def _take(self, name: str) -> None:
        self._free -= 1
        self.running[name] += 1

    def _dispatch(self) -> None:
        while self._free > 0:
            chosen = None
            for name, queue in self._waiting.items():
                while queue and queue[0].done():  # cancelled waiters
                    queue.popleft()
                if queue and self.running[name] < self._cap(name):
                    chosen = name
                    break
            for name in [n for n, q in self._waiting.items() if not q]:
                del self._waiting[name]
            if chosen is None:
                return
            queue = self._waiting[chosen]
            future = queue.popleft()
            self._waiting.move_to_end(chosen)  # served: its next job waits for the others
            if not queue:
                del self._waiting[chosen]
            self._take(chosen)
            future.set_result(None)
