"""Receiving one ``add_entries`` upload: route bytes to keys, validate, stage to disk.

The upload is the keys' byte streams one after another (header order, each ``byte_size``
long). Each key's bytes go through a ``StreamValidator`` as they arrive, so a bad tensor is
refused at the chunk that carries it and no key is ever held in memory, and are written
(``pwrite``) either straight into the key's data file past its committed end (``targets``: the
store reserved that range for this upload; nothing below the committed end is touched, and a
crash leaves only bytes that no index names) or, when the store could not reserve it, to an
anonymous staging file (``O_TMPFILE``) that the store appends once the whole upload is valid.

``write_many`` takes several chunks at once (the gRPC layer hands over what arrived while the
previous batch was being written): each key's validated pieces go out in one ``pwritev``, and
a key written straight into its data file has its writeback started window by window
(``WriteBehind``) so that the commit's ``fsync`` finds little left to write.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from launcher.errors import RequestError, invalid
from launcher.store.datasets.rules import KeyRules, check_tensor
from launcher.store.datasets.writeback import WriteBehind
from launcher.store.spool import open_spool_file
from runtime.tensor import StreamValidator, TensorError


@dataclass
class KeyUpload:
    """One key's part of the upload, written to ``fd`` from ``base`` on; offsets are relative
    to ``base`` (``direct``: ``fd`` is the key's data file, else a staging file, base 0)."""

    req_pos: int
    key_pos: int
    name: str
    rules: KeyRules
    byte_size: int
    fd: int
    base: int = 0
    direct: bool = False
    validator: StreamValidator = field(default_factory=StreamValidator)
    received: int = 0
    offsets: array = field(default_factory=lambda: array("Q"))
    lengths: array = field(default_factory=lambda: array("Q"))
    #: Rolling writeback of a direct key's bytes (None: staged, copied at commit).
    behind: WriteBehind | None = None

    def __post_init__(self) -> None:
        if self.direct:
            self.behind = WriteBehind(self.fd, self.base)

    @property
    def count(self) -> int:
        return len(self.offsets)

    def path(self, index: int | None = None) -> str:
        base = f"keys[{self.req_pos}].data"
        return base if index is None else f"{base}[{index}]"


class EntryAppender:
    """Accepts the upload's chunks in order; ``finish`` checks completeness and counts."""

    def __init__(
        self,
        staging_dir: Path,
        parts: list[tuple[int, str, KeyRules, int]],
        targets: list[tuple[int, int]] | None = None,
    ) -> None:
        """``parts``: per key in header order, (dataset key position, name, rules, byte_size);
        ``targets``: per key, (data file descriptor, reserved start), which the appender then
        owns; None: each key is staged."""
        self.keys: list[KeyUpload] = []
        try:
            staging_dir.mkdir(parents=True, exist_ok=True)
            for req_pos, (key_pos, name, rules, byte_size) in enumerate(parts):
                if targets is not None:
                    fd, base = targets[req_pos]
                    upload = KeyUpload(req_pos, key_pos, name, rules, byte_size, fd, base, True)
                else:
                    fd = open_spool_file(staging_dir)
                    upload = KeyUpload(req_pos, key_pos, name, rules, byte_size, fd)
                self.keys.append(upload)
        except BaseException:
            if targets is not None:
                for fd, _ in targets[len(self.keys) :]:
                    os.close(fd)
            self.close()
            raise
        self._current = 0
        self._count: int | None = None
        #: What failed a ``write_many`` (a refusal, or a failed write): its batch is not (all)
        #: written, so the upload cannot go on; every later ``write_many`` and ``finish``
        #: raises it again.
        self._failed: BaseException | None = None

    def write(self, chunk: bytes | memoryview) -> None:
        self.write_many((chunk,))

    def write_many(self, chunks: Sequence[bytes | memoryview]) -> None:
        """Validate ``chunks`` in order and write them. A refused byte ends the call before
        anything of the batch is written, and the upload with it."""
        if self._failed is not None:
            raise self._failed
        try:
            for key, at, pieces in self._route(chunks):
                end = _pwrite_all(key.fd, pieces, at)
                if key.behind is not None:
                    key.behind.written(end)
        except BaseException as err:
            self._failed = err
            raise

    def _route(
        self, chunks: Sequence[bytes | memoryview]
    ) -> list[tuple[KeyUpload, int, list[memoryview]]]:
        """Each chunk cut at key borders and validated: per run of one key, (key, file
        offset, pieces)."""
        runs: list[tuple[KeyUpload, int, list[memoryview]]] = []
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                key = self._next_open_key()
                if key is None:
                    expected = sum(k.byte_size for k in self.keys)
                    raise invalid(
                        "chunk",
                        f"more bytes than announced: the header's byte_size values total "
                        f"{expected}",
                    )
                piece = view[: key.byte_size - key.received]
                view = view[len(piece) :]
                self._validate(key, piece)
                if runs and runs[-1][0] is key:
                    runs[-1][2].append(piece)
                else:
                    runs.append((key, key.base + key.received, [piece]))
                key.received += len(piece)
        return runs

    def finish(self) -> int:
        """The number of entries; refuses a short upload, a truncated tensor or unequal counts."""
        if self._failed is not None:
            raise self._failed
        key = self._next_open_key()
        if key is not None:
            raise invalid(
                key.path(),
                f"the upload ended after {key.received} of the {key.byte_size} bytes announced "
                f"for key {key.name!r}",
            )
        return self._count if self._count is not None else 0

    def close(self) -> None:
        for key in self.keys:
            if key.fd >= 0:
                os.close(key.fd)
                key.fd = -1

    def _next_open_key(self) -> KeyUpload | None:
        """The key still receiving bytes, closing (and checking) each key that is complete."""
        while self._current < len(self.keys):
            key = self.keys[self._current]
            if key.received < key.byte_size:
                return key
            self._complete(key)
            self._current += 1
        return None

    def _validate(self, key: KeyUpload, piece: memoryview) -> None:
        done_before = key.validator.completed
        try:
            infos = key.validator.feed(piece)
        except TensorError as err:
            index = key.count + key.validator.completed - done_before
            raise self._tensor_error(key, err, index) from None
        for info in infos:
            check_tensor(key.rules, info.type, tuple(info.shape), key.path(key.count))
            key.offsets.append(info.start)
            key.lengths.append(info.end - info.start)

    def _complete(self, key: KeyUpload) -> None:
        try:
            key.validator.finish()
        except TensorError as err:
            raise self._tensor_error(key, err, key.count) from None
        if self._count is None:
            self._count = key.count
        elif key.count != self._count:
            first = self.keys[0]
            raise invalid(
                key.path(),
                f"key {key.name!r} has {key.count} tensors but key {first.name!r} has "
                f"{self._count}; every key needs exactly one tensor per entry",
            )

    @staticmethod
    def _tensor_error(key: KeyUpload, err: TensorError, index: int) -> RequestError:
        return invalid(
            key.path(index),
            f"not a valid tensor: {err} (at byte {err.offset} of key {key.name!r}'s data)",
        )


#: At most this many buffers go to one ``pwritev`` (the system's IOV_MAX is at least 1024).
_IOV_BATCH = 512


def _pwrite_all(fd: int, pieces: list[memoryview], at: int) -> int:
    """Write ``pieces`` one after another from ``at`` (short writes resumed); the end."""
    for first in range(0, len(pieces), _IOV_BATCH):
        rest = pieces[first : first + _IOV_BATCH]
        while rest:
            written = os.pwritev(fd, rest, at)
            if written <= 0:
                raise OSError(f"pwritev wrote nothing at byte {at}")
            at += written
            while rest and written >= len(rest[0]):
                written -= len(rest[0])
                rest = rest[1:]
            if written:
                rest[0] = rest[0][written:]
    return at
