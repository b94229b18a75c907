"""The job log store on real files: bounds, the cut, partial lines, followers, crash leftovers,
removal and bad ids."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from launcher.store.joblog_buffer import MAX_LINE_BYTES
from launcher.store.joblogs import FLUSH_SECONDS, MIN_LOG_BYTES, JobLogs

STATE = "s-" + "a" * 20
OTHER = "s-" + "b" * 20


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def texts(lines: list[dict[str, Any]]) -> list[str]:
    return [line["text"] for line in lines]


def test_lines_keep_their_stream_order_and_partial_lines_until_flushed(tmp_path: Path) -> None:
    async def go() -> tuple[Any, Any]:
        logs = JobLogs(tmp_path)
        log = logs.open(STATE)
        log.launcher("accepted")
        log.output("stdout", b"one\ntw")
        log.output("stderr", b"e1\r\n")
        log.output("stdout", b"o\nthree")  # "three" has no newline yet
        live = await logs.read(STATE)
        await logs.close(log)
        return live, await logs.read(STATE)

    live, final = run(go())
    assert [(x["stream"], x["text"]) for x in live[0]] == [
        ("launcher", "accepted"),
        ("stdout", "one"),
        ("stderr", "e1"),
        ("stdout", "two"),
    ]
    assert texts(final[0])[-1] == "three"  # the unfinished last line is kept at the end
    assert final[1] is False
    assert [p.name for p in tmp_path.iterdir()] == [f"{STATE}.joblog"]


def test_a_flood_keeps_head_and_tail_within_the_bound_and_marks_the_cut(tmp_path: Path) -> None:
    limit = MIN_LOG_BYTES

    async def go() -> tuple[Any, Any, int]:
        logs = JobLogs(tmp_path, limit)
        log = logs.open(STATE)
        log.launcher("accepted")
        for i in range(20_000):
            log.output("stdout", b"line %d\n" % i)
        peak = sum(p.stat().st_size for p in tmp_path.iterdir())
        live = await logs.read(STATE)
        log.launcher("outcome: success")
        await logs.close(log)
        return live, await logs.read(STATE), peak

    live, (lines, truncated), peak = run(go())
    assert live[1] is True and truncated is True
    assert peak <= 4 * limit  # disk bounded while it ran (head + at most twice the tail)
    text = texts(lines)
    cut = [t for t in text if t.startswith("[... ")]
    assert len(cut) == 1 and "bytes of output cut here" in cut[0]
    assert text[0] == "accepted" and text[1] == "line 0"
    assert text[-2:] == ["line 19999", "outcome: success"]
    numbers = [int(t.split()[1]) for t in text if t.startswith("line ")]
    head = numbers[: text.index(cut[0]) - 1]
    assert head == list(range(len(head)))  # the first part, whole and in order
    tail = numbers[len(head) :]
    assert tail == list(range(tail[0], 20_000))  # the last part, whole and in order
    assert (tmp_path / f"{STATE}.joblog").stat().st_size <= limit + 1024


def test_a_huge_line_is_split_and_one_enormous_chunk_costs_only_the_bound(
    tmp_path: Path,
) -> None:
    async def go() -> Any:
        logs = JobLogs(tmp_path, MIN_LOG_BYTES)
        log = logs.open(STATE)
        log.output("stdout", b"y" * (3 * MAX_LINE_BYTES) + b"\n")
        log.output("stderr", (b"z" * 99 + b"\n") * 200_000)  # 20 MB in one chunk
        log.output("stdout", b"end\n")
        await logs.close(log)
        return await logs.read(STATE)

    lines, truncated = run(go())
    assert truncated
    assert all(len(x["text"]) <= MAX_LINE_BYTES for x in lines)
    assert lines[-1]["text"] == "end"
    assert lines[-2]["text"] == "z" * 99


def test_followers_get_every_line_once_then_the_end(tmp_path: Path) -> None:
    async def go() -> list[str]:
        logs = JobLogs(tmp_path)
        log = logs.open(STATE)
        got: list[str] = []

        async def follow() -> None:
            async for lines, _ in logs.follow(STATE):
                got.extend(texts(lines))

        follower = asyncio.create_task(follow())
        for i in range(5):
            log.output("stdout", b"n%d\n" % i)
            await asyncio.sleep(0.01)
        log.launcher("outcome")
        await logs.close(log)
        await asyncio.wait_for(follower, 5)
        return got

    assert run(go()) == ["n0", "n1", "n2", "n3", "n4", "outcome"]


def test_a_slow_follower_still_gets_the_lines_written_as_the_job_ended(tmp_path: Path) -> None:
    """The last lines and the end come while the follower still holds its previous batch
    (a slow reader): it reads them before it stops."""

    async def go() -> list[str]:
        logs = JobLogs(tmp_path)
        log = logs.open(STATE)
        log.launcher("first")
        got: list[str] = []
        holding = asyncio.Event()
        release = asyncio.Event()

        async def follow() -> None:
            async for lines, _ in logs.follow(STATE):
                got.extend(texts(lines))
                holding.set()
                await release.wait()  # the batch is with a slow reader

        follower = asyncio.create_task(follow())
        await asyncio.wait_for(holding.wait(), 5)
        log.launcher("phase finished")
        log.launcher("outcome: success")
        await logs.close(log)
        release.set()
        await asyncio.wait_for(follower, 5)
        return got

    assert run(go()) == ["first", "phase finished", "outcome: success"]


def test_a_crashed_jobs_work_files_read_as_head_cut_tail(tmp_path: Path) -> None:
    async def go() -> None:
        logs = JobLogs(tmp_path, MIN_LOG_BYTES)
        log = logs.open(STATE)
        for i in range(20_000):
            log.output("stdout", b"row %d\n" % i)
        await asyncio.sleep(FLUSH_SECONDS + 0.3)  # what waited reaches the work files
        # the launcher dies here: no close

    run(go())
    assert {p.name for p in tmp_path.iterdir()} == {f"{STATE}.joblog.head", f"{STATE}.joblog.tail"}
    lines, truncated = run(JobLogs(tmp_path, MIN_LOG_BYTES).read(STATE))
    assert truncated
    text = texts(lines)
    assert text[0] == "row 0" and text[-1] == "row 19999"
    assert sum(t.startswith("[... output cut here") for t in text) == 1


def test_remove_and_size_and_bad_ids(tmp_path: Path) -> None:
    async def go() -> None:
        logs = JobLogs(tmp_path)
        log = logs.open(STATE)
        log.output("stdout", b"x\n")
        await logs.close(log)
        assert logs.stored_bytes(STATE) == (tmp_path / f"{STATE}.joblog").stat().st_size > 0
        for bad in ("../x", "s-AAAAAAAAAAAAAAAAAAAA", "", "s-" + "a" * 21, OTHER + "/.."):
            assert await logs.read(bad) is None
            assert logs.stored_bytes(bad) == 0
            logs.remove(bad)  # refused quietly: nothing outside the folder is touched
        assert await logs.read(OTHER) is None
        logs.remove(STATE)
        assert await logs.read(STATE) is None
        assert list(tmp_path.iterdir()) == []

    (tmp_path.parent / "x").write_text("keep")
    run(go())
    assert (tmp_path.parent / "x").read_text() == "keep"


def test_a_bound_below_the_minimum_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least"):
        JobLogs(tmp_path, MIN_LOG_BYTES - 1)


def test_with_a_database_ended_logs_are_saved_there_in_batches(tmp_path: Path) -> None:
    from launcher.store.db import Database

    db = Database(tmp_path / "launcher.db")

    async def go() -> None:
        logs = JobLogs(tmp_path / "logs", db=db)
        for state_id in (STATE, OTHER):
            log = logs.open(state_id)
            log.output("stdout", f"{state_id}\n".encode())
            await logs.close(log)
        # readable at once (from memory), then saved together
        assert texts((await logs.read(STATE))[0]) == [STATE]
        await logs.aclose()
        assert logs.live == {}

    run(go())
    again = JobLogs(tmp_path / "logs", db=db)  # as after a restart
    assert texts(run(again.read(OTHER))[0]) == [OTHER]
    assert again.stored_bytes(STATE) > 0
    again.remove(STATE)
    assert run(again.read(STATE)) is None and again.stored_bytes(STATE) == 0
    assert texts(run(again.read(OTHER))[0]) == [OTHER]
    assert list((tmp_path / "logs").iterdir()) == []
    db.close()


def test_bytes_that_are_not_utf8_and_control_characters_stay_one_readable_line(
    tmp_path: Path,
) -> None:
    async def go() -> Any:
        logs = JobLogs(tmp_path)
        log = logs.open(STATE)
        log.output("stdout", b"\xff\xfe bad \x00 nul\n")
        log.output("stderr", b"no newline at the end")
        log.launcher("a launcher line\nwith a newline")  # never splits into two records
        await logs.close(log)
        return await logs.read(STATE)

    lines, _ = run(go())
    assert [(x["stream"], x["text"]) for x in lines] == [
        ("stdout", "\ufffd\ufffd bad \x00 nul"),
        ("launcher", "a launcher line with a newline"),
        ("stderr", "no newline at the end"),
    ]


def test_a_silent_jobs_lines_keep_their_times_and_order_without_a_buffer(tmp_path: Path) -> None:
    """A job that writes nothing never builds its buffer: its launcher lines wait with the
    time each was said, and come out as the same records whichever way it is read."""

    async def go() -> tuple[Any, Any, Any, Any]:
        logs = JobLogs(tmp_path)
        silent = logs.open(STATE)
        silent.launcher("accepted")
        await asyncio.sleep(0.01)
        silent.launcher("phase createState started")
        assert silent._buffer is None
        await logs.close(silent)
        assert silent._buffer is None
        speaking = logs.open(OTHER)
        speaking.launcher("accepted")
        speaking.output("stdout", b"hello\n")  # builds the buffer, the waiting line first
        speaking.launcher("outcome: success")
        live_other = await logs.read(OTHER)
        await logs.close(speaking)
        return await logs.read(STATE), live_other, await logs.read(OTHER), silent

    silent_lines, live_other, other_lines, _ = run(go())
    assert texts(silent_lines[0]) == ["accepted", "phase createState started"]
    assert silent_lines[0][1]["timestamp"] - silent_lines[0][0]["timestamp"] >= 9
    assert texts(live_other[0]) == ["accepted", "hello", "outcome: success"]
    assert [x["stream"] for x in other_lines[0]] == ["launcher", "stdout", "launcher"]
