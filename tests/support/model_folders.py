"""Model folders for the registry's tests."""

from __future__ import annotations

from pathlib import Path


def named_model(models: Path, model_id: str, name: str = "first") -> Path:
    """A model folder ``models/<model_id>`` named ``name`` in its model.toml."""
    (models / model_id).mkdir(parents=True)
    (models / model_id / "main.py").write_text("x = 1\n")
    (models / model_id / "model.toml").write_text(f'name = "{name}"\n')
    return models / model_id
