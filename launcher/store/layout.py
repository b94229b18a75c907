"""The data root's layout: where models, states, datasets, snapshots and temp files live."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DataRoot:
    """``<root>/``: ``models/`` (written by operators), ``states/``, ``datasets/``,
    ``snapshots/``, ``tmp/`` (same filesystem, so renames out of it are atomic), ``launcher.db``.
    """

    root: Path

    @classmethod
    def prepare(cls, root: Path) -> DataRoot:
        """Create the folders that are missing; ``root`` itself may be new."""
        data_root = cls(Path(root))
        for folder in (
            data_root.models,
            data_root.states,
            data_root.datasets,
            data_root.snapshots,
            data_root.tmp,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        return data_root

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def states(self) -> Path:
        return self.root / "states"

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def db_path(self) -> Path:
        return self.root / "launcher.db"
