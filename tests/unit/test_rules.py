"""launcher/rules.py: one answer per input, wherever it is checked."""

from __future__ import annotations

import pytest

from launcher import rules
from launcher.api.validation import check_id, check_name
from launcher.errors import RequestError
from launcher.store.models import valid_model_id


def _reason(call: object, *args: object) -> tuple[str, str, str]:
    with pytest.raises(RequestError) as caught:
        call(*args)  # type: ignore[operator]
    fields = caught.value.to_json()
    return fields["code"], fields["parameterName"], fields["reason"]


@pytest.mark.parametrize("value", ["", "../x", ".", "..", "a/b", "x" * 129, "a b", "é", "-x"])
def test_bad_ids_are_refused_the_same_way_by_every_checker(value: str) -> None:
    assert not rules.MODEL_ID.ok(value) and not valid_model_id(value)
    code, path, reason = _reason(check_id, "modelId", value, "a model id")
    assert (code, path) == ("invalid_parameter", "modelId")
    assert "is not a model id" in reason
    assert _reason(rules.DATASET_ID.check, "datasetId", value)[2].endswith(
        rules.DATASET_ID.description
    )


def test_state_ids_never_hold_a_dot() -> None:
    assert rules.STATE_ID.ok("s-abc_1") and not rules.STATE_ID.ok("s.deleted")
    assert not rules.STATE_ID.ok("s" * 65)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("x" * 257, "has 257 characters; at most 256"),
        ("a\nb", "control characters"),
    ],
)
def test_names_get_one_reason_everywhere(value: str, words: str) -> None:
    for call in (
        lambda: check_name("name", value),
        lambda: rules.DATASET_NAME.check("name", value),
        lambda: rules.NAME.check("name", value),
    ):
        code, path, reason = _reason(call)
        assert (code, path) == ("invalid_parameter", "name")
        assert words in reason


def test_tensor_rule_reasons() -> None:
    assert rules.tensor_reason("f32", (2, 3), ("f32",), (-1, 3)) is None
    assert "type i32 is not allowed (allowedTypes: f32)" in str(
        rules.tensor_reason("i32", (3,), ("f32",), None)
    )
    assert "does not match the shape rule [-1, 3]" in str(
        rules.tensor_reason("f32", (2, 4), None, (-1, 3))
    )
    assert rules.tensor_reason("f32", (2,), None, (-1, 3)) is not None  # rank differs


def test_shared_limits_come_from_the_runtime() -> None:
    from runtime import protocol

    assert rules.MAX_STATE_KEY_BYTES == protocol.MAX_STATE_KEY_BYTES == 1 << 30
    assert rules.MAX_STATE_KEYS == protocol.MAX_STATE_KEYS
    assert rules.STATE_KEY_NAME.max_chars == protocol.MAX_STATE_KEY_NAME_CHARS


def test_count_rule_refuses_bools_and_out_of_range() -> None:
    assert rules.GPU_COUNT.ok(1) and not rules.GPU_COUNT.ok(True) and not rules.GPU_COUNT.ok(65)
    assert "between 1 and 64" in _reason(rules.GPU_COUNT.check, "gpus.count", 0)[2]


def test_every_rule_is_listed() -> None:
    assert {"MODEL_ID", "STATE_ID", "DATASET_ID", "NAME", "STATE_KEY_NAME"} <= set(rules.RULES)
