"""Data root layout: prepare creates every folder the stores expect, idempotently."""

from __future__ import annotations

from pathlib import Path

from launcher.store.layout import DataRoot


def test_prepare_creates_the_layout_and_can_run_again(tmp_path: Path) -> None:
    root = DataRoot.prepare(tmp_path / "new-root")
    (root.models / "m").mkdir()
    again = DataRoot.prepare(tmp_path / "new-root")
    assert again == root
    assert sorted(p.name for p in root.root.iterdir()) == [
        "datasets",
        "models",
        "snapshots",
        "states",
        "tmp",
    ]
    assert (root.models / "m").is_dir()
    assert root.db_path == tmp_path / "new-root" / "launcher.db"
