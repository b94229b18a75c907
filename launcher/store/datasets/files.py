"""On-disk layout of one dataset: append-only data files and immutable, versioned indexes.

``<root>/datasets/<id>/`` holds, per key (by position, since key names are free text),
``key<pos>.<gen>.data``: serialized tensors appended one after another and never rewritten
below the committed end; and per dataset version ``<version>.idx``: a ``.npy`` array of shape
``(entries, keys, 2)`` (uint64 offset and length of each entry of each key, in entry order;
length 0 marks an optional key absent from that entry). An index file is written once and only
unlinked when a newer version is committed, so a reader holding a version's index and the data
fds keeps reading exactly that version.
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


def load_index(dataset_dir: Path, version_id: str, entries: int, key_count: int) -> np.ndarray:
    """A version's index, memory-mapped (read-only) so large indexes are paged, not loaded."""
    if entries == 0:
        return empty_index(key_count)
    index = np.load(index_path(dataset_dir, version_id), mmap_mode="r", allow_pickle=False)
    if index.shape != (entries, key_count, 2):
        raise OSError(
            f"index of version {version_id} has shape {index.shape}, "
            f"expected {(entries, key_count, 2)}"
        )
    return index


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
