"""A bad tensor is named by its index however the stream is cut into chunks.

``StreamValidator.completed`` counts the tensors finished before the failing byte, so the
spool (createState) and the dataset appender (add_entries) name the failing tensor without
re-feeding anything; the refused spool keeps nothing and says which tensor and why.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from launcher.errors import InvalidParameter, RequestError
from launcher.store.spool import Spool
from runtime.tensor import StreamValidator, TensorError, serialize

GOOD = b"".join(serialize(np.arange(n, dtype=np.float32)) for n in (3, 5, 7))
BAD = bytes([250])  # no tensor type has code 250


@pytest.mark.parametrize("cut", [1, 2, 7, 64, len(GOOD) + 1])
def test_completed_counts_the_tensors_before_the_failing_byte(cut: int) -> None:
    stream = GOOD + BAD + serialize(np.ones(2))
    validator = StreamValidator()
    with pytest.raises(TensorError, match="unknown type code 250"):
        for at in range(0, len(stream), cut):
            validator.feed(stream[at : at + cut])
    assert validator.completed == 3


@pytest.mark.parametrize("cut", [3, 100, 1 << 20])
def test_spool_names_the_failing_tensor_and_keeps_nothing(tmp_path: Path, cut: int) -> None:
    stream = GOOD + BAD
    spool = Spool(tmp_path, "params[1]", len(stream), max_tensors=10)
    try:
        with pytest.raises(InvalidParameter) as refused:
            for at in range(0, len(stream), cut):
                spool.feed(stream[at : at + cut])
        assert refused.value.parameter_name == "params[1].data[3]"
        assert "unknown type code 250" in refused.value.reason
    finally:
        spool.close()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RequestError, match="ended while it was received"):
        spool.feed(GOOD[:4])  # a write arriving after the call ended is refused
