"""The job slots' order: round-robin across tenants, FIFO within one, a per-tenant cap, and
no slot lost to a waiter cancelled as it was served."""

from __future__ import annotations

import asyncio

import pytest

from launcher.jobs.caps import PhaseCaps, parse_phase_caps
from launcher.jobs.fair import FairSlots


async def _order(slots: FairSlots, jobs: list[tuple[str, str]]) -> list[str]:
    """Queue ``(tenant, name)`` jobs in order while the only slot is busy; the order served."""
    served: list[str] = []
    await slots.acquire("busy")

    async def job(tenant: str, name: str) -> None:
        await slots.acquire(tenant)
        served.append(name)
        await asyncio.sleep(0)
        slots.release(tenant)

    tasks = []
    for tenant, name in jobs:
        tasks.append(asyncio.create_task(job(tenant, name)))
        await asyncio.sleep(0)
    slots.release("busy")
    await asyncio.gather(*tasks)
    return served


def test_queued_jobs_are_taken_round_robin_across_tenants() -> None:
    jobs = [("a", "a1"), ("a", "a2"), ("a", "a3"), ("b", "b1"), ("c", "c1"), ("b", "b2")]
    served = asyncio.run(_order(FairSlots(1), jobs))
    assert served == ["a1", "b1", "c1", "a2", "b2", "a3"]


def test_jobs_without_a_tenant_share_one_fifo_queue() -> None:
    jobs = [(None, "1"), (None, "2"), (None, "3")]
    assert asyncio.run(_order(FairSlots(1), jobs)) == ["1", "2", "3"]  # type: ignore[arg-type]


def test_a_tenant_at_its_cap_waits_while_others_run() -> None:
    async def scenario() -> tuple[int, int, bool]:
        slots = FairSlots(3, per_tenant=1)
        await slots.acquire("a")
        second_a = asyncio.create_task(slots.acquire("a"))
        await asyncio.sleep(0)
        await asyncio.wait_for(slots.acquire("b"), 1)  # b is not held up by a's backlog
        waiting = slots.waiting("a")
        slots.release("a")
        await asyncio.wait_for(second_a, 1)
        return waiting, slots.running["a"], second_a.done()

    assert asyncio.run(scenario()) == (1, 1, True)


def test_a_waiter_cancelled_while_served_hands_its_slot_on() -> None:
    async def scenario() -> int:
        slots = FairSlots(1)
        await slots.acquire("a")
        first = asyncio.create_task(slots.acquire("b"))
        second = asyncio.create_task(slots.acquire("c"))
        await asyncio.sleep(0)
        slots.release("a")  # granted to b ...
        first.cancel()  # ... as b goes away
        await asyncio.gather(first, return_exceptions=True)
        await asyncio.wait_for(second, 1)
        return slots.running["c"]

    assert asyncio.run(scenario()) == 1


def test_phase_caps_parse_and_clamp() -> None:
    assert parse_phase_caps("create_state=2.5") == PhaseCaps(create_state=2.5)
    assert parse_phase_caps(" code_startup=1 , create_state=3 ") == PhaseCaps(1.0, 3.0)
    for bad in ("create_state=-1", "create_state=inf", "nope=1", "create_state", ""):
        with pytest.raises(ValueError):
            parse_phase_caps(bad)
