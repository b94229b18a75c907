"""The Ray executor: workers on the nodes of a Ray cluster (the only package importing ray)."""

from launcher.executors.ray.executor import RayExecutor

__all__ = ["RayExecutor"]
