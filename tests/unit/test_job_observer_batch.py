"""The observer does the ends of jobs that finish together in one pass, and nobody sees the lag.

A job's outcome line, its INFO line and its counters wait at most ``ENDED_SECONDS`` to be done
with those of the other jobs ending meanwhile; reading a job's log or scraping the metrics
first settles what waits, so a caller that has the answer always finds them. The INFO lines
of one pass reach the stream in one write.
"""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path

import pytest

from launcher import outcomes as oc
from launcher.jobs.job import Job, PhaseEvent
from launcher.jobs.request import JobRequest
from launcher.observe import jobs as observe_jobs
from launcher.observe import logsetup
from launcher.observe.metrics import Metrics
from launcher.store.joblogs import JobLogs


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def operator_log() -> CountingStream:
    """The launcher's operator log set up as ``launcher serve`` does, into a string."""
    stream = CountingStream()
    handler = logsetup.GatheringHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("launcher")
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


def _job(state_id: str) -> Job:
    request = JobRequest(model_id="m", name="n", model=None, startup_failure=None)
    request.persistent_launcher_id = "pl-1"
    return Job(state_id, request)


def _end(job: Job) -> None:
    result = oc.JobResult(oc.Success(job.state_id), oc.Durations(2, {oc.Phase.CREATE_STATE: 1}))
    job.emit(PhaseEvent(oc.Phase.CREATE_STATE, True, 1))
    for listener in job.listeners:
        listener(result)


def test_a_read_right_after_the_end_has_the_outcome_and_the_counters(
    tmp_path: Path, operator_log: CountingStream
) -> None:
    async def main() -> None:
        logs = JobLogs(tmp_path)
        metrics = Metrics()
        observer = observe_jobs.JobObserver(logs, metrics)
        job = _job("s-aaaaaaaaaaaaaaaaaaaa")
        observer.accepted(job)
        _end(job)
        # Not done yet: the end waits for company.
        assert "job s-aaaaaaaaaaaaaaaaaaaa" not in operator_log.getvalue()
        found = await logs.read(job.state_id)  # settles first
        assert found is not None
        texts = [line["text"] for line in found[0]]
        assert texts[0].startswith("accepted s-aaaaaaaaaaaaaaaaaaaa")
        assert texts[-1] == "outcome: success (total 2 ms)"
        assert "INFO launcher.jobs: job s-aaaaaaaaaaaaaaaaaaaa" in operator_log.getvalue()
        observer.settle()  # nothing waits: nothing happens twice
        assert operator_log.getvalue().count("job s-aaaaaaaaaaaaaaaaaaaa") == 1
        assert b'launcher_jobs_total{launcher="persistent",outcome="success"} 1.0' in (
            metrics.render()
        )
        await observer.close()

    asyncio.run(main())


def test_jobs_ending_together_are_written_in_one_pass_within_the_delay(
    tmp_path: Path, operator_log: CountingStream
) -> None:
    async def main() -> None:
        logs = JobLogs(tmp_path)
        observer = observe_jobs.JobObserver(logs, Metrics())
        jobs = [_job(f"s-{i:020d}") for i in range(5)]
        for job in jobs:
            observer.accepted(job)
        writes_before = operator_log.writes
        for job in jobs:
            _end(job)
        await asyncio.sleep(observe_jobs.ENDED_SECONDS * 5)  # the timer's pass, no reader
        text = operator_log.getvalue()
        assert all(f"job {job.state_id} " in text for job in jobs), text
        assert operator_log.writes == writes_before + 1  # the five lines in one write
        await observer.close()  # (their files written)
        for job in jobs:
            found = await logs.read(job.state_id)
            assert found is not None and found[0][-1]["text"] == "outcome: success (total 2 ms)"

    asyncio.run(main())


def test_many_ended_jobs_do_not_wait_for_the_timer(tmp_path: Path) -> None:
    async def main() -> None:
        logs = JobLogs(tmp_path)
        observer = observe_jobs.JobObserver(logs, Metrics())
        jobs = [_job(f"s-{i:020d}") for i in range(observe_jobs.ENDED_MAX)]
        for job in jobs:
            observer.accepted(job)
            _end(job)
        # The last one filled the batch: all are done without a turn of the loop.
        assert all(logs.live[job.state_id].closed for job in jobs)
        await observer.close()

    asyncio.run(main())


def test_a_line_outside_a_gathered_pass_is_written_at_once(operator_log: CountingStream) -> None:
    log = logging.getLogger("launcher.requests")
    log.info("refused one")
    assert operator_log.getvalue() == "INFO launcher.requests: refused one\n"
    with logsetup.gathered():
        log.info("a")
        log.warning("b")
        assert "a\n" not in operator_log.getvalue()
    assert operator_log.getvalue().endswith(
        "INFO launcher.requests: a\nWARNING launcher.requests: b\n"
    )
