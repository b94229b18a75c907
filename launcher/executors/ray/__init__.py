"""The Ray executor: workers on the nodes of a Ray cluster (the only package importing ray).

``RayExecutor`` is imported on first use, so that the node side (``node.py``, which needs no
Ray) starts without importing it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from launcher.executors.ray.executor import RayExecutor

__all__ = ["RayExecutor"]


def __getattr__(name: str) -> Any:
    if name == "RayExecutor":
        from launcher.executors.ray.executor import RayExecutor

        return RayExecutor
    raise AttributeError(name)
