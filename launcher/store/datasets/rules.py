"""Dataset definitions and their rules: validation of a new dataset and of each tensor added.

Owns what a dataset *is* (keys with required flags and shape/type rules) and every
``invalid_parameter`` reason that comes from those rules, so the store and the gRPC layer
refuse bad input with the same words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from launcher.errors import invalid
from launcher.store.model_toml import TENSOR_TYPES

MAX_NAME_CHARS = 256
MAX_DESCRIPTION_CHARS = 10_000
MAX_KEYS = 100
MAX_RANK = 255

_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


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


def check_id(value: str, path: str) -> None:
    """Dataset ids are lowercase UUIDs; anything else cannot name a dataset."""
    if not _ID_RE.match(value):
        shown = value if len(value) <= 80 else value[:80] + "..."
        raise invalid(path, f"{shown!r} is not a dataset id (a lowercase UUID)")


def check_name(value: str, path: str, what: str) -> None:
    if not value or not value.strip():
        raise invalid(path, f"{what} must not be empty")
    if len(value) > MAX_NAME_CHARS:
        raise invalid(path, f"{what} has {len(value)} characters; at most {MAX_NAME_CHARS}")
    if not value.isprintable():
        raise invalid(path, f"{what} must not contain control characters")


def check_definition(name: str, description: str, keys: Sequence[KeyDef]) -> None:
    """Refuse a dataset definition that could never hold entries or names things ambiguously."""
    check_name(name, "name", "the dataset name")
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
        check_name(key.name, f"keys[{i}].name", "a key name")
        if key.name in seen:
            raise invalid(f"keys[{i}].name", f"key {key.name!r} is defined twice")
        seen.add(key.name)
        _check_rules(key.rules, f"keys[{i}].rules")


def _check_rules(rules: KeyRules, path: str) -> None:
    if rules.shape is not None:
        if len(rules.shape) > MAX_RANK:
            raise invalid(f"{path}.shape", f"rank {len(rules.shape)}; at most {MAX_RANK}")
        for d, size in enumerate(rules.shape):
            if size < -1:
                raise invalid(
                    f"{path}.shape[{d}]",
                    f"{size} is not a length; use a length >= 0, or -1 for any length",
                )
    for t, type_name in enumerate(rules.allowed_types):
        if type_name not in TENSOR_TYPES:
            raise invalid(
                f"{path}.allowedTypes[{t}]",
                f"unknown tensor type {type_name!r}; one of {', '.join(TENSOR_TYPES)}",
            )


def check_tensor(rules: KeyRules, type_name: str, shape: tuple[int, ...], path: str) -> None:
    """Refuse a tensor that breaks its key's rules, naming the rule."""
    if rules.allowed_types and type_name not in rules.allowed_types:
        raise invalid(
            path,
            f"type {type_name} is not allowed (allowedTypes: {', '.join(rules.allowed_types)})",
        )
    if rules.shape is None:
        return
    if len(shape) != len(rules.shape) or any(
        want != -1 and want != got for want, got in zip(rules.shape, shape, strict=False)
    ):
        raise invalid(
            path,
            f"shape {list(shape)} does not match the key's shape rule {list(rules.shape)}"
            " (-1: any length)",
        )
