"""On-disk layout of one dataset: append-only data files and immutable, versioned indexes.

``<root>/datasets/<id>/`` holds, per key (by position, since key names are free text),
``key<pos>.<gen>.data``: serialized tensors appended one after another and never rewritten
below the committed end; and per dataset version ``<version>.idx``: a ``.npy`` file of
``(entries, keys, 2)`` uint64 records (offset and length of each entry of each key, in entry
order; length 0 marks an optional key absent from that entry). The records a version counts
(its ``entries`` in ``launcher.db``) are never rewritten: adding entries appends records
after them and links the same file under the new version's name (``append_index``), so an add
costs what it adds, not the whole index, and a reader holding an older version's index keeps
reading exactly that version. The ``.npy`` header's shape is that of the version that wrote the
file; readers take the count from the database, and bytes past it belong to an add that never
committed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from launcher.store.blobs import fsync_dir

INDEX_DTYPE = np.uint64


def data_path(dataset_dir: Path, key_pos: int, gen: int) -> Path:
    return dataset_dir / f"key{key_pos}.{gen}.data"


def index_path(dataset_dir: Path, version_id: str) -> Path:
    return dataset_dir / f"{version_id}.idx"


def empty_index(key_count: int) -> np.ndarray:
    return np.zeros((0, key_count, 2), dtype=INDEX_DTYPE)


def write_index(dataset_dir: Path, version_id: str, index: np.ndarray) -> None:
    """Write a version's index durably (temp file, fsync, rename) before it is committed."""
    final = index_path(dataset_dir, version_id)
    tmp = final.with_suffix(".idx.tmp")
    with open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(index, dtype=INDEX_DTYPE), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    fsync_dir(dataset_dir)


def _records_offset(path: Path, key_count: int) -> int:
    """Where the records of an index file start (after its ``.npy`` header), checked."""
    with open(path, "rb") as f:
        major, _ = np.lib.format.read_magic(f)
        read_header = (
            np.lib.format.read_array_header_1_0
            if major == 1
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(f)
        if fortran or dtype != np.dtype(INDEX_DTYPE) or shape[1:] != (key_count, 2):
            raise OSError(f"{path.name}: not an index of {key_count} keys")
        return f.tell()


def load_index(dataset_dir: Path, version_id: str, entries: int, key_count: int) -> np.ndarray:
    """A version's index, memory-mapped (read-only) so large indexes are paged, not loaded."""
    if entries == 0:
        return empty_index(key_count)
    path = index_path(dataset_dir, version_id)
    offset = _records_offset(path, key_count)
    needed = offset + entries * key_count * 2 * np.dtype(INDEX_DTYPE).itemsize
    if os.stat(path).st_size < needed:
        raise OSError(f"index of version {version_id} holds fewer than {entries} entries")
    return np.memmap(path, INDEX_DTYPE, "r", offset, (entries, key_count, 2))


def append_index(
    dataset_dir: Path, version_id: str, entries: int, new_version_id: str, added: np.ndarray
) -> None:
    """The new version's index: ``added`` written after the ``entries`` records of
    ``version_id``'s file (over whatever an uncommitted add left there), fsync'd, and the file
    linked as ``new_version_id`` (the old name stays until the new version is committed)."""
    path = index_path(dataset_dir, version_id)
    key_count = added.shape[1]
    offset = _records_offset(path, key_count)
    record = key_count * 2 * np.dtype(INDEX_DTYPE).itemsize
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        at = offset + entries * record
        os.ftruncate(fd, at)
        data = np.ascontiguousarray(added, dtype=INDEX_DTYPE).tobytes()
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, at)
            view = view[written:]
            at += written
        os.fsync(fd)
    finally:
        os.close(fd)
    new = index_path(dataset_dir, new_version_id)
    unlink_quietly(new)
    os.link(path, new)
    fsync_dir(dataset_dir)


def sweep(dataset_dir: Path, version_id: str, gens: list[int]) -> None:
    """Remove what a crash left in a dataset's folder: all but its current index and data."""
    keep = {index_path(dataset_dir, version_id).name}
    keep.update(data_path(dataset_dir, pos, gen).name for pos, gen in enumerate(gens))
    for path in dataset_dir.iterdir():
        if path.name not in keep:
            unlink_quietly(path)


def copy_range(src_fd: int, src_offset: int, dst_fd: int, dst_offset: int, size: int) -> None:
    """Copy ``size`` bytes between files, in the kernel where the filesystem allows it."""
    copied = 0
    try:
        while copied < size:
            n = os.copy_file_range(
                src_fd, dst_fd, size - copied, src_offset + copied, dst_offset + copied
            )
            if n == 0:
                raise OSError(f"source ended after {copied} of {size} bytes")
            copied += n
    except OSError as err:
        if err.errno is None or copied:
            raise
        # Filesystems without copy_file_range: a bounded user-space copy.
        while copied < size:
            block = os.pread(src_fd, min(1 << 20, size - copied), src_offset + copied)
            if not block:
                raise OSError(f"source ended after {copied} of {size} bytes") from None
            copied += os.pwrite(dst_fd, block, dst_offset + copied)


def unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
