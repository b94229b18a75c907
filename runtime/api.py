"""The model-author API: what ``createModelState(options)`` receives.

Names and argument checks follow the platform's Python SDK (``decthings-model``) so that its
models run unchanged: ``options.params`` (name -> :class:`DataLoader`), ``options.state_provider``
(:class:`StateProvider`) and ``options.other_models`` (id -> :class:`OtherModel`). Unlike that
SDK, ``next`` returns decoded tensors, reads are paged, and shuffling works.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from runtime._call import PAGE_BYTES, PAGE_ELEMENTS, Call

if TYPE_CHECKING:
    from runtime.tensor import SerializedTensor


def _count(value: object, where: str, name: str) -> int:
    # bool is an int subclass, but True as an amount is a bug in the caller.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f'{where}: expected "{name}" to be of type "int" or "float", not {type(value).__name__}'
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f'{where}: "{name}" must be finite, not {value}')
    return math.floor(value)


class DataLoader:
    """A lazily read list of tensors: one parameter of the call."""

    def __init__(self, call: Call, name: str, dataset: str, size: int, total_bytes: int) -> None:
        self._call = call
        self._name = name
        self._dataset = dataset
        self._size = size
        self._total_bytes = total_bytes
        self._position = 0
        mean = -(-total_bytes // size) if size else 1
        self._page = max(1, min(PAGE_ELEMENTS, PAGE_BYTES // max(1, mean)))

    def __repr__(self) -> str:
        return f"<DataLoader {self._name!r} size={self._size} position={self._position}>"

    def size(self) -> int:
        return self._size

    def total_byte_size(self) -> int:
        return self._total_bytes

    def position(self) -> int:
        return self._position

    def set_position(self, position: int | float) -> None:
        where = "DataLoader set_position"
        index = max(_count(position, where, "position"), 0)
        if index >= self._size:
            raise ValueError(
                f"{where}: position {index} is not below the data size {self._size} "
                f"of {self._name!r}"
            )
        self._position = index

    def remaining(self) -> int:
        return self._size - self._position

    def has_next(self, amount: int | float = 1) -> bool:
        return self.remaining() >= _count(amount, "DataLoader has_next", "amount")

    def shuffle(self) -> None:
        """Ask the host for a new random order; later reads see it."""
        self._call.check_open("DataLoader shuffle")
        self._call.shuffle([self._dataset])

    def shuffle_in_group(self, others: list[DataLoader]) -> None:
        """Shuffle this and ``others`` with one shared permutation, so rows stay aligned."""
        where = "DataLoader shuffle_in_group"
        if not isinstance(others, list) or not all(isinstance(o, DataLoader) for o in others):
            raise TypeError(f'{where}: expected "others" to be a list of DataLoaders')
        group = [self, *others]
        for other in others:
            if other._call is not self._call:
                raise ValueError(f"{where}: {other._name!r} belongs to another call")
            if other._size != self._size:
                raise ValueError(
                    f"{where}: {other._name!r} has {other._size} elements and {self._name!r} "
                    f"has {self._size}; a group shuffles only loaders of equal size"
                )
        datasets = [loader._dataset for loader in group]
        if len(set(datasets)) != len(datasets):
            raise ValueError(f"{where}: a loader appears more than once in the group")
        self._call.check_open(where)
        self._call.shuffle(datasets)

    async def next(self, amount: int | float = 1) -> list[SerializedTensor]:
        """The next ``amount`` tensors (fewer at the end), decoded; advances the position."""
        where = "DataLoader next"
        self._call.check_open(where)
        wanted = min(_count(amount, where, "amount"), self.remaining())
        if wanted <= 0:
            return []
        start = self._position
        self._position += wanted
        blobs = await self._call.read(self._dataset, start, wanted, self._page, self._total_bytes)
        return [self._decode(blob, start + i) for i, blob in enumerate(blobs)]

    def _decode(self, blob: bytearray, index: int) -> SerializedTensor:
        """Check the element and hand it out as its bytes that also decode themselves (the
        reader received it into a ``SerializedTensor``: no copy)."""
        from runtime import tensor

        try:
            end = tensor.tensor_extent(blob)
        except tensor.TensorError as e:
            raise ValueError(f"param {self._name!r}, element {index}: {e}") from None
        if end != len(blob):
            raise ValueError(
                f"param {self._name!r}, element {index}: {len(blob) - end} bytes follow the tensor"
            )
        if isinstance(blob, tensor.SerializedTensor):
            return blob
        return tensor.SerializedTensor(blob)


class StateLoader:
    """One state key of another model: its byte size, and its bytes on demand."""

    def __init__(self, call: Call, key: str, dataset: str, amount: int, total_bytes: int) -> None:
        self._call = call
        self._key = key
        self._dataset = dataset
        self._amount = amount
        self._total_bytes = total_bytes

    def __repr__(self) -> str:
        return f"<StateLoader {self._key!r} byte_size={self._total_bytes}>"

    def byte_size(self) -> int:
        return self._total_bytes

    async def read(self) -> bytes:
        self._call.check_open("StateLoader read")
        if self._amount != 1:
            raise ValueError(
                f"StateLoader read: state key {self._key!r} has {self._amount} elements, not 1"
            )
        (blob,) = await self._call.read(self._dataset, 0, 1, 1, self._total_bytes)
        return bytes(blob)


class OtherModel:
    """A mounted model: where its files are, and its state."""

    def __init__(self, mount_path: str, state: dict[str, StateLoader]) -> None:
        self.mount_path = mount_path
        self.state = state

    def __repr__(self) -> str:
        return f"<OtherModel mount_path={self.mount_path!r} keys={sorted(self.state)}>"


class StateProvider:
    """Where the model hands over its state: at most 100 keys, each at most 1 GiB, each once."""

    def __init__(self, call: Call) -> None:
        self._call = call

    def provide(self, key: str, data: Any) -> None:
        """Send ``data`` (bytes or any buffer, e.g. a numpy array's raw bytes) as ``key``."""
        self._call.provide([(_key(key, "StateProvider provide"), _bytes_view(data))])

    def provide_all(self, data: list[dict[str, Any]]) -> None:
        """Send several keys in one event: ``[{"key": str, "data": bytes_like}, ...]``."""
        where = "StateProvider provide_all"
        if not isinstance(data, list) or not all(
            isinstance(x, dict) and "key" in x and "data" in x for x in data
        ):
            raise TypeError(f'{where}: expected a list of dicts like {{"key": str, "data": bytes}}')
        self._call.provide([(_key(x["key"], where), _bytes_view(x["data"])) for x in data])


def _key(key: object, where: str) -> str:
    if not isinstance(key, str):
        raise TypeError(f'{where}: expected "key" to be a str, not {type(key).__name__}')
    if not key:
        raise ValueError(f"{where}: a state key must not be empty")
    return key


def _bytes_view(data: object) -> memoryview:
    """A flat byte view of ``data`` without a copy; a non-contiguous buffer is copied once."""
    if type(data).__module__ == "numpy" and hasattr(data, "dtype"):
        return _numpy_view(data)
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            "StateProvider: expected the data to be bytes, bytearray, memoryview or another "
            f"object with the buffer protocol (such as a numpy array), not {type(data).__name__}"
        ) from None
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    return view.cast("B")


def _numpy_view(array: Any) -> memoryview:
    import numpy

    if array.dtype.hasobject:
        raise TypeError("StateProvider: a numpy array of Python objects has no raw bytes")
    flat = numpy.ascontiguousarray(array).reshape(-1)
    return flat.view(numpy.uint8).data


class CreateModelStateOptions:
    """The argument of ``createModelState``."""

    def __init__(
        self,
        params: dict[str, DataLoader],
        state_provider: StateProvider,
        other_models: dict[str, OtherModel],
    ) -> None:
        self.params = params
        self.state_provider = state_provider
        self.other_models = other_models

    def __repr__(self) -> str:
        return (
            f"<CreateModelStateOptions params={sorted(self.params)} "
            f"other_models={sorted(self.other_models)}>"
        )
