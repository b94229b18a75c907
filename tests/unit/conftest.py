"""Fixtures shared by the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def models(tmp_path: Path) -> Path:
    """An empty ``models/`` folder."""
    path = tmp_path / "models"
    path.mkdir()
    return path
