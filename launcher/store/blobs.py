"""Content files of the store: streaming a key to disk while hashing it, and reading it back
with verification. Also the fsync helpers that the commit protocol is built from."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from launcher import rules
from launcher.store.errors import CorruptBlob

MAX_KEY_BYTES = rules.MAX_STATE_KEY_BYTES
#: Keys up to this size are stored in the state's database row instead of a file.
INLINE_MAX_BYTES = 64 << 10
#: A key file's pages are handed to the disk in windows of this many bytes while it is written
#: (``posix_fadvise(DONTNEED)`` starts their writeback, and drops the window before once it is
#: clean), so the device works while the key arrives, ``finish``'s fsync has little left, and
#: a big key does not pile up in the page cache: its pages are reused for the next window.
WRITEBACK_WINDOW = 8 << 20
#: A write at least this long to a key file is written by another thread while it is hashed
#: (both release the GIL), so a key costs about its hashing alone.
PARALLEL_WRITE_MIN = 1 << 20
#: Direct writes (``O_DIRECT``, past the page cache) need this alignment of the buffer's
#: address, the file offset and the length.
DIRECT_ALIGN = 4096
_O_DIRECT = getattr(os, "O_DIRECT", 0)
#: The threads that write those (each job only ever waits for its own write).
_file_writes = ThreadPoolExecutor(max_workers=4, thread_name_prefix="key-write")
_fadvise = getattr(os, "posix_fadvise", None)
_DONTNEED = getattr(os, "POSIX_FADV_DONTNEED", 4)


def _drop_pages(fd: int, offset: int, length: int) -> None:
    """Start writeback of ``fd``'s dirty pages in the range and drop its clean ones (advice
    only: durability is ``fsync``'s, so a file system that refuses the advice changes nothing)."""
    if _fadvise is not None:
        try:
            _fadvise(fd, offset, length, _DONTNEED)
        except OSError:
            pass


def _address(view: memoryview) -> int:
    """Where a writable buffer's bytes start in memory."""
    return ctypes.addressof(ctypes.c_char.from_buffer(view))


@dataclass(frozen=True)
class StateKey:
    key: str
    byte_size: int
    sha256: str


def fsync_dir(path: Path) -> None:
    """Make the entries of ``path`` (creations, renames, removals) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_tree(path: Path) -> None:
    """Remove a file or folder if present (no error when it is already gone)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class KeyWriter:
    """Streams one state key, hashing (sha256) while writing.

    A key of at most ``inline_max`` bytes stays in memory and is committed inside the
    state's SQLite row (one fsync for the whole state); a larger one goes to a new
    temporary file as soon as it outgrows the limit, and is fsync'd by ``finish``. A large
    write of a page-aligned buffer at an aligned offset goes straight to the device
    (O_DIRECT, see ``_direct_for``); the others' pages go to the disk in
    ``writeback_window`` windows as they are written (see ``WRITEBACK_WINDOW``) and are
    dropped from the page cache once fsync'd.
    """

    def __init__(
        self,
        key: str,
        path: Path,
        max_bytes: int = MAX_KEY_BYTES,
        inline_max: int = INLINE_MAX_BYTES,
        writeback_window: int = WRITEBACK_WINDOW,
        before_file: Callable[[], None] | None = None,
    ) -> None:
        self.key = key
        self.path = path
        #: called before the key's file is made (its folder is made then, not for every key)
        self._before_file = before_file
        self._max_bytes = max_bytes
        self._inline_max = inline_max
        self._buffer: bytearray | None = bytearray()
        self._fd: int | None = None
        #: held while the file descriptor is used, so ``discard`` (from another thread: an
        #: aborted job) waits for a write or fsync in flight instead of closing the fd under it
        self._lock = threading.Lock()
        self._open = True
        self._spilled = False
        self._hash = hashlib.sha256()
        self._size = 0
        self._window = writeback_window
        self._advised_from = 0  # the start of the range the next advice covers
        self._window_start = 0  # the start of the window being written
        #: The key file opened a second time with O_DIRECT once it exists (None: not
        #: possible here, or given up after a refused write); ``-1``: not tried yet.
        self._direct_fd: int | None = -1
        self.result: StateKey | None = None
        #: the key's bytes when it is stored inline (set by ``finish``), else None
        self.inline: bytes | None = None

    @property
    def in_file(self) -> bool:
        """True once the key has outgrown the inline size and lives in its file."""
        return self._spilled

    def write(self, data: bytes | bytearray | memoryview) -> None:
        with self._lock:
            self._write(memoryview(data).cast("B"))

    def _write(self, view: memoryview) -> None:
        if not self._open:
            raise ValueError(f"state key {self.key!r} is already finished or closed")
        if self._size + len(view) > self._max_bytes:
            raise ValueError(f"state key {self.key!r} is larger than {self._max_bytes} bytes")
        if self._buffer is None and len(view) >= PARALLEL_WRITE_MIN:
            direct = self._direct_for(view)
            writing = _file_writes.submit(self._write_direct if direct else self._write_all, view)
            try:
                self._hash.update(view)
            finally:
                writing.result()  # its error (the key is discarded then) before the hash's
            if not direct:
                self._advise()
            return
        self._hash.update(view)
        if self._buffer is not None:
            if self._size + len(view) <= self._inline_max:
                self._buffer += view
                self._size += len(view)
                return
            if self._before_file is not None:
                self._before_file()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            self._spilled = True
            pending, self._buffer = self._buffer, None
            self._size = 0
            self._write_all(memoryview(pending))
        self._write_all(view)
        self._advise()

    def _advise(self) -> None:
        if self._size - self._window_start >= self._window:
            # The window just written goes to the disk; the one before it, written back by
            # now (mostly), leaves the page cache.
            assert self._fd is not None
            _drop_pages(self._fd, self._advised_from, self._size - self._advised_from)
            self._advised_from, self._window_start = self._window_start, self._size

    def _direct_for(self, view: memoryview) -> bool:
        """Whether ``view`` can be written past the page cache: a large aligned write (the
        buffer's address, the file offset and the length all multiples of DIRECT_ALIGN) to a
        file system that takes O_DIRECT. No copy into the page cache, no dirty pages to
        write back or drop: the device reads the buffer, and ``finish``'s fsync has only the
        device's cache and the unaligned ends left."""
        if (
            not _O_DIRECT
            or self._size % DIRECT_ALIGN
            or len(view) % DIRECT_ALIGN
            or view.readonly
            or _address(view) % DIRECT_ALIGN
        ):
            return False
        if self._direct_fd == -1:
            try:
                self._direct_fd = os.open(self.path, os.O_WRONLY | _O_DIRECT | os.O_CLOEXEC)
            except OSError:  # tmpfs and others: EINVAL
                self._direct_fd = None
        return self._direct_fd is not None

    def _write_direct(self, view: memoryview) -> None:
        assert self._direct_fd is not None and self._direct_fd != -1
        try:
            while view:
                written = os.pwrite(self._direct_fd, view, self._size)
                view = view[written:]
                self._size += written
                if written % DIRECT_ALIGN and view:  # a short write: the rest as usual
                    break
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                self._discard()
                raise
            self._close_direct()  # refused after all (alignment rules of this device)
        if view:
            self._close_direct()
            self._write_all(view)

    def _close_direct(self) -> None:
        fd, self._direct_fd = self._direct_fd, None
        if fd is not None and fd != -1:
            os.close(fd)

    def _write_all(self, view: memoryview) -> None:
        assert self._fd is not None
        try:
            while view:  # at the key's size, not the fd's position (direct writes move it)
                written = os.pwrite(self._fd, view, self._size)
                view = view[written:]
                self._size += written
        except BaseException:
            # A partial write (disk full, ...) leaves a key that cannot be finished.
            self._discard()
            raise

    def finish(self) -> StateKey:
        """Make the key final: fsync and close its file, or keep its bytes for the row."""
        with self._lock:
            if not self._open:
                raise ValueError(f"state key {self.key!r} is already finished or closed")
            self._open = False
            if self._buffer is not None:
                self.inline, self._buffer = bytes(self._buffer), None
            else:
                self._close_direct()
                fd, self._fd = self._fd, None
                assert fd is not None
                try:
                    os.fsync(fd)
                    if self._size >= self._window:  # a big key is not read back soon: drop it
                        _drop_pages(fd, 0, 0)
                finally:
                    os.close(fd)
            self.result = StateKey(self.key, self._size, self._hash.hexdigest())
            return self.result

    def discard(self) -> None:
        """Close (if open) and remove the file; idempotent. Waits for a write or fsync that
        another thread has in flight."""
        with self._lock:
            self._discard()

    def _discard(self) -> None:
        self._open = False
        self._buffer = None
        self._close_direct()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
        self.path.unlink(missing_ok=True)


class KeyReader:
    """An open stored key. ``fd`` stays valid even if the state is deleted meanwhile.

    ``chunks`` verifies size and sha256 as it goes and raises ``CorruptBlob`` at the end on a
    mismatch, so a consumer must not treat the bytes as good until the iteration completes.
    """

    def __init__(self, path: Path, key: StateKey, data: bytes | None = None) -> None:
        self.key = key.key
        self.byte_size = key.byte_size
        self.sha256 = key.sha256
        self.path = path
        if data is None:
            self.fd = os.open(path, os.O_RDONLY)
        else:  # an inline key: its bytes behind a file descriptor, like every other key
            self.fd = os.memfd_create(f"state-key-{key.key}"[:200], os.MFD_CLOEXEC)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self.fd, view) :]
            except BaseException:
                os.close(self.fd)
                raise

    def chunks(self, size: int = 1 << 20) -> Iterator[bytes]:
        if size <= 0:
            raise ValueError("chunk size must be positive")
        actual = os.fstat(self.fd).st_size
        if actual != self.byte_size:
            raise CorruptBlob(str(self.path), f"size {actual}, expected {self.byte_size}")
        digest = hashlib.sha256()
        offset = 0
        # pread, not read: the fd's position is left alone for other users of ``fd``.
        while offset < self.byte_size:
            chunk = os.pread(self.fd, min(size, self.byte_size - offset), offset)
            if not chunk:
                raise CorruptBlob(str(self.path), f"ends at byte {offset}")
            digest.update(chunk)
            offset += len(chunk)
            yield chunk
        if digest.hexdigest() != self.sha256:
            raise CorruptBlob(str(self.path), "sha256 does not match the recorded one")

    def read_all(self) -> bytes:
        """The whole key, verified (for small keys; large ones should use ``chunks``)."""
        return b"".join(self.chunks())

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __enter__(self) -> KeyReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
