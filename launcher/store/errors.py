"""The store's failures: each a type carrying the seed's error ``code`` it becomes."""

from __future__ import annotations


class StoreError(Exception):
    """Base of the store's failures; ``code`` is the seed's error code."""

    code = "unknown"


class StateNotFound(StoreError):
    code = "state_not_found"

    def __init__(self, model_id: str, state_id: str | None) -> None:
        self.model_id = model_id
        self.state_id = state_id
        what = f"state {state_id!r}" if state_id is not None else "active state"
        super().__init__(f"model {model_id!r} has no {what}")


class StateKeyNotFound(StoreError):
    code = "state_key_not_found"

    def __init__(self, state_id: str, key: str) -> None:
        self.state_id = state_id
        self.key = key
        super().__init__(f"state {state_id!r} has no key {key!r}")


class StateIsActive(StoreError):
    code = "state_is_active"

    def __init__(self, model_id: str, state_id: str) -> None:
        self.model_id = model_id
        self.state_id = state_id
        super().__init__(f"state {state_id!r} is the active state of model {model_id!r}")


class CorruptBlob(StoreError):
    """Stored bytes do not match their recorded size or sha256 (``unknown`` to the client)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        super().__init__(f"{path}: {reason}")
