"""One job's log in memory: records of the model's output and the launcher's lines, bounded.

A record is one line: ``b"<ms> <kind> <text>\\n"`` where ``kind`` is ``o`` (stdout), ``e``
(stderr), ``l`` (the launcher's own line) or ``c`` (the cut: ``text`` is how many bytes were
left out there). The first ``head_bytes`` of records are kept, then only the last
``tail_bytes``: what lies between is dropped and counted. Everything here is bounded by those
two numbers plus one partial line per stream, whatever the model writes, and each chunk costs
a handful of C-speed byte operations (no per-line Python work for a flood).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

#: A line longer than this is split into records of this size.
MAX_LINE_BYTES = 16 * 1024

STREAMS = {b"o": "stdout", b"e": "stderr", b"l": "launcher"}
_KIND = {"stdout": b"o", "stderr": b"e", "launcher": b"l"}


def now_ms() -> int:
    return int(time.time() * 1000)


def cut_text(omitted: int | None) -> str:
    what = "output" if omitted is None else f"{omitted} bytes of output"
    return f"[... {what} cut here: this job's log keeps its first and last parts ...]"


def parse_records(data: bytes) -> list[dict[str, Any]]:
    """The API lines of stored records (a cut record becomes the launcher's cut line)."""
    lines: list[dict[str, Any]] = []
    for record in data.split(b"\n"):
        ms, _, rest = record.partition(b" ")
        kind, _, text = rest.partition(b" ")
        if not ms.isdigit():
            continue
        if kind == b"c":
            omitted = int(text) if text.isdigit() else None
            lines.append({"stream": "launcher", "timestamp": int(ms), "text": cut_text(omitted)})
        elif kind in STREAMS:
            lines.append(
                {
                    "stream": STREAMS[kind],
                    "timestamp": int(ms),
                    "text": text.decode("utf-8", "replace"),
                }
            )
    return lines


def launcher_record(text: str, ms: int) -> bytes:
    """The record of one launcher line."""
    clean = text.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace")
    return b"%d l " % ms + clean[:MAX_LINE_BYTES] + b"\n"


class _Block:
    """Consecutive records (whole lines), numbered from ``first``."""

    __slots__ = ("count", "data", "first")

    def __init__(self, first: int, data: bytes, count: int) -> None:
        self.first = first
        self.data = data
        self.count = count


class LogBuffer:
    """The bounded record log of one job. ``seq`` numbers every record ever added, so a
    follower can ask for what came after the last record it saw."""

    def __init__(self, head_bytes: int, tail_bytes: int) -> None:
        self.head_limit = head_bytes
        self.tail_limit = tail_bytes
        self.head: list[_Block] = []
        self.head_bytes = 0
        self.head_count = 0
        self.tail: deque[_Block] = deque()
        self.tail_bytes = 0
        self.seq = 0
        #: Bytes of records dropped between head and tail (0: nothing cut yet).
        self.omitted = 0
        self.cut = False
        self.cut_ms = 0  # when the first record was dropped: the cut line's timestamp
        self._partial: dict[bytes, bytes] = {b"o": b"", b"e": b""}

    # ---- adding ----

    def launcher_line(self, text: str, ms: int | None = None) -> bytes:
        """Add one launcher line (written at ``ms``, default now); returns the record bytes
        added (for the disk)."""
        return self._add(launcher_record(text, now_ms() if ms is None else ms), 1)

    def output(self, stream: str, data: bytes) -> bytes:
        """Add a chunk the model wrote to ``stream``; returns the record bytes added."""
        kind = _KIND[stream]
        data = self._partial[kind] + data
        last = data.rfind(b"\n")
        if last < 0:
            if len(data) < MAX_LINE_BYTES:
                self._partial[kind] = data
                return b""
            whole, self._partial[kind] = data, b""
        else:
            whole, self._partial[kind] = data[:last], data[last + 1 :]
            if len(self._partial[kind]) >= MAX_LINE_BYTES:
                whole, self._partial[kind] = data, b""
        return self._add_lines(kind, whole)

    def flush(self) -> bytes:
        """Add the unfinished last line of each stream."""
        added = b""
        for kind, rest in self._partial.items():
            if rest:
                self._partial[kind] = b""
                added += self._add_lines(kind, rest)
        return added

    def _add_lines(self, kind: bytes, whole: bytes) -> bytes:
        if self.cut and len(whole) > self.tail_limit:
            # Only the last tail_limit bytes can survive: skip the rest unread.
            start = whole.find(b"\n", len(whole) - self.tail_limit)
            start = len(whole) if start < 0 else start + 1
            dropped = whole[:start]
            self.omitted += len(dropped)
            self.seq += dropped.count(b"\n") + (1 if start == len(whole) else 0)
            whole = whole[start:]
            if not whole:
                return b""
        whole = whole.replace(b"\r\n", b"\n")
        if whole.endswith(b"\r"):  # the line's own "\r\n" (its "\n" was split off)
            whole = whole[:-1]
        lines = whole.split(b"\n")
        if max(map(len, lines)) > MAX_LINE_BYTES:
            lines = [
                line[i : i + MAX_LINE_BYTES] or b""
                for line in lines
                for i in range(0, max(len(line), 1), MAX_LINE_BYTES)
            ]
        prefix = b"%d %s " % (now_ms(), kind)
        return self._add(prefix + (b"\n" + prefix).join(lines) + b"\n", len(lines))

    def _add(self, data: bytes, count: int) -> bytes:
        if not self.cut and self.head_bytes + len(data) <= self.head_limit:
            self.head.append(_Block(self.seq, data, count))
            self.head_bytes += len(data)
            self.head_count += count
            self.seq += count
            return data
        if not self.cut and count > 1:
            # Fill the head up to its limit with whole records, the rest goes on.
            room = self.head_limit - self.head_bytes
            split = data.rfind(b"\n", 0, room)
            if split >= 0:
                first = data[: split + 1]
                n = first.count(b"\n")
                self._add(first, n)
                return first + self._add(data[split + 1 :], count - n)
        if not self.cut:
            self.cut, self.cut_ms = True, now_ms()
        self.tail.append(_Block(self.seq, data, count))
        self.tail_bytes += len(data)
        self.seq += count
        self._trim()
        return data

    def _trim(self) -> None:
        while self.tail_bytes > self.tail_limit and self.tail:
            block = self.tail[0]
            excess = self.tail_bytes - self.tail_limit
            if len(block.data) <= excess:
                self.tail.popleft()
                self.tail_bytes -= len(block.data)
                self.omitted += len(block.data)
                continue
            end = block.data.find(b"\n", excess - 1)
            if end < 0 or end + 1 >= len(block.data):
                self.tail.popleft()
                self.tail_bytes -= len(block.data)
                self.omitted += len(block.data)
                continue
            n = block.data.count(b"\n", 0, end + 1)
            self.omitted += end + 1
            self.tail_bytes -= end + 1
            block.data = block.data[end + 1 :]
            block.first += n
            block.count -= n

    # ---- reading ----

    def tail_data(self) -> bytes:
        return b"".join(b.data for b in self.tail)

    def final_data(self) -> bytes:
        """Head, the cut record (if anything was cut) and tail: the job's whole kept log."""
        head = b"".join(b.data for b in self.head)
        if not self.cut:
            return head
        return head + b"%d c %d\n" % (self.cut_ms, self.omitted) + self.tail_data()

    def since(self, seq: int) -> tuple[bytes, int]:
        """The records numbered ``seq`` and after (a cut record where some were dropped), and
        the number to ask from next time."""
        parts: list[bytes] = []
        for block in self.head:
            if block.first + block.count > seq:
                parts.append(_skip(block, seq))
        tail_first = self.tail[0].first if self.tail else self.seq
        if self.cut and max(seq, self.head_count) < tail_first:
            parts.append(b"%d c %d\n" % (self.cut_ms, self.omitted))
        for block in self.tail:
            if block.first + block.count > seq:
                parts.append(_skip(block, seq))
        return b"".join(parts), self.seq


def _skip(block: _Block, seq: int) -> bytes:
    skip = seq - block.first
    if skip <= 0:
        return block.data
    start = 0
    for _ in range(skip):
        start = block.data.index(b"\n", start) + 1
    return block.data[start:]
