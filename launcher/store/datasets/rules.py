"""Dataset definitions and their rules: validation of a new dataset and of each tensor added.

Owns what a dataset *is* (keys with required flags and shape/type rules) and every
``invalid_parameter`` reason that comes from those rules, so the store and the gRPC layer
refuse bad input with the same words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from launcher import rules
from launcher.errors import invalid
from launcher.store.model_toml import TENSOR_TYPES

MAX_NAME_CHARS = rules.MAX_NAME_CHARS
MAX_DESCRIPTION_CHARS = rules.MAX_DESCRIPTION_CHARS
MAX_KEYS = rules.MAX_DATASET_KEYS
MAX_RANK = rules.MAX_RANK


@dataclass(frozen=True)
class KeyRules:
    """``shape`` None: any shape; a dimension of -1: any length there. No types: any type."""

    shape: tuple[int, ...] | None = None
    allowed_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class KeyDef:
    name: str
    required: bool = True
    rules: KeyRules = KeyRules()


def check_definition(name: str, description: str, keys: Sequence[KeyDef]) -> None:
    """Refuse a dataset definition that could never hold entries or names things ambiguously."""
    rules.DATASET_NAME.check("name", name)
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise invalid(
            "description",
            f"has {len(description)} characters; at most {MAX_DESCRIPTION_CHARS}",
        )
    if not keys:
        raise invalid("keys", "a dataset needs at least one key")
    if len(keys) > MAX_KEYS:
        raise invalid("keys", f"{len(keys)} keys; at most {MAX_KEYS}")
    seen: set[str] = set()
    for i, key in enumerate(keys):
        rules.DATASET_KEY_NAME.check(f"keys[{i}].name", key.name)
        if key.name in seen:
            raise invalid(f"keys[{i}].name", f"key {key.name!r} is defined twice")
        seen.add(key.name)
        _check_rules(key.rules, f"keys[{i}].rules")


def _check_rules(key_rules: KeyRules, path: str) -> None:
    if key_rules.shape is not None:
        if len(key_rules.shape) > MAX_RANK:
            raise invalid(f"{path}.shape", f"rank {len(key_rules.shape)}; at most {MAX_RANK}")
        for d, size in enumerate(key_rules.shape):
            if size < -1:
                raise invalid(
                    f"{path}.shape[{d}]",
                    f"{size} is not a length; use a length >= 0, or -1 for any length",
                )
    for t, type_name in enumerate(key_rules.allowed_types):
        if type_name not in TENSOR_TYPES:
            raise invalid(
                f"{path}.allowedTypes[{t}]",
                f"unknown tensor type {type_name!r}; one of {', '.join(TENSOR_TYPES)}",
            )


def check_tensor(key_rules: KeyRules, type_name: str, shape: tuple[int, ...], path: str) -> None:
    """Refuse a tensor that breaks its key's rules (``launcher.rules.check_tensor``)."""
    rules.check_tensor(path, type_name, shape, key_rules.allowed_types or None, key_rules.shape)
