"""``SerializedTensor``: one element as a model's loaders hand it out, bytes that decode.

Kept apart from the codec so that the worker's reader can receive each element straight into
one (no copy) without importing numpy before the model does; decoding imports the codec.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from runtime.tensor import Tensor


class SerializedTensor(bytearray):
    """A decoded tensor that is also its serialized bytes: what a model's loaders hand out.

    The official runtime hands models each element's serialized bytes, and models wrapped with
    ``decthings_model.make_model`` rebuild ``DecthingsTensor`` objects from them; this object
    works wherever those bytes do (``b"".join``, ``bytes()``, ``len``, slicing, ``memoryview``,
    equality with bytes, ``DecthingsTensor.deserialize``) and decodes itself on use:
    ``numpy()`` is a zero-copy view of these bytes for fixed-size types. Build one from bytes
    that hold exactly one valid tensor (``tensor_extent`` checks that). Nothing decoded is kept
    on the object, so it never holds a reference cycle to its own (possibly large) buffer.
    """

    def tensor(self) -> Tensor:
        """The decoded tensor (fixed-size elements are a view of these bytes)."""
        from runtime.tensor import deserialize

        return deserialize(self)[0]

    def type(self) -> str:
        from runtime._tensor_decode import read_header

        return read_header(memoryview(self), 0).type

    def shape(self) -> tuple[int, ...]:
        from runtime._tensor_decode import read_header

        return read_header(memoryview(self), 0).shape

    def numpy(self) -> np.ndarray:
        return self.tensor().numpy()

    def item(self) -> object:
        return self.tensor().item()

    def serialize(self) -> bytes:
        return bytes(self)

    def byte_size(self) -> int:
        return len(self)

    def __repr__(self) -> str:
        return f"SerializedTensor(type={self.type()!r}, shape={self.shape()})"
