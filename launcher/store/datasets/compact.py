"""Reclaiming the space of removed entries by copying a key's live entries to a new file.

Data files are never rewritten in place (open snapshots read them), so compaction writes the
live entries, in entry order, to the key's next generation ``key<pos>.<gen+1>.data`` and
returns their new positions; the store commits the switch and only then unlinks the old file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from launcher.store.datasets import files as files
from launcher.store.datasets.meta import KeyFile


def worth_compacting(live_bytes: int, key_file: KeyFile, min_garbage: int) -> bool:
    """Compact once removed bytes are both over ``min_garbage`` and over half the file."""
    garbage = key_file.end - live_bytes
    return garbage >= min_garbage and garbage * 2 > key_file.end


def compact_key(
    dataset_dir: Path, pos: int, key_file: KeyFile, column: np.ndarray
) -> tuple[KeyFile, np.ndarray]:
    """Copy the entries of ``column`` ((entries, 2): offset, length) to a new generation."""
    gen = key_file.gen + 1
    moved = np.zeros_like(column)
    src = os.open(files.data_path(dataset_dir, pos, key_file.gen), os.O_RDONLY)
    try:
        dst = os.open(
            files.data_path(dataset_dir, pos, gen), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644
        )
        try:
            end = _copy_live(src, dst, column, moved)
            os.fsync(dst)
        finally:
            os.close(dst)
    finally:
        os.close(src)
    files.fsync_dir(dataset_dir)
    return KeyFile(gen, end), moved


def _copy_live(src: int, dst: int, column: np.ndarray, moved: np.ndarray) -> int:
    """Copy entry by entry, merging neighbours that are already adjacent into one copy."""
    out = 0
    run_start = run_length = 0
    for i, (offset, length) in enumerate(column.tolist()):
        if length == 0:
            continue  # an absent optional entry stays (0, 0)
        moved[i] = (out + run_length, length)
        if run_length and offset == run_start + run_length:
            run_length += length
            continue
        if run_length:
            files.copy_range(src, run_start, dst, out, run_length)
            out += run_length
        moved[i] = (out, length)
        run_start, run_length = offset, length
    if run_length:
        files.copy_range(src, run_start, dst, out, run_length)
        out += run_length
    return out
