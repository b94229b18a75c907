"""Runs inside the worker: tensor codec, worker protocol, model-author API. Never imports grpc.

``import runtime`` stays cheap (the worker imports it first); the tensor codec's names are
re-exported lazily on first use, so a worker does not pay for numpy before the model does.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "TYPE_CODES",
    "Media",
    "StreamValidator",
    "Tensor",
    "TensorError",
    "TensorInfo",
    "deserialize",
    "deserialize_many",
    "serialize",
    "serialize_many",
    "serialize_parts",
    "tensor_extent",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from runtime import tensor

        return getattr(tensor, name)
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
