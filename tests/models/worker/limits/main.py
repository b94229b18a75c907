"""Breaks one state-provider or loader rule, chosen by the string param `case`."""
import numpy as np

import runtime.protocol

previous = {}


async def create_model_state(options):
    case = (await options.params["case"].next())[0].item()
    provider = options.state_provider
    if case == "duplicate":
        provider.provide("a", b"1")
        provider.provide("a", b"2")
    elif case == "duplicate_in_one_call":
        provider.provide_all([{"key": "a", "data": b"1"}, {"key": "a", "data": b"2"}])
    elif case == "too_many":
        provider.provide_all([{"key": f"k{i}", "data": b""} for i in range(101)])
    elif case == "hundred":
        provider.provide_all([{"key": f"k{i}", "data": b"x"} for i in range(100)])
    elif case == "over_1gib":
        provider.provide("big", np.empty((1 << 30) + 1, dtype=np.uint8))
    elif case == "over_lowered_limit":
        runtime.protocol.MAX_STATE_KEY_BYTES = 10
        provider.provide("ten", b"0123456789")
        provider.provide("eleven", b"0123456789!")
    elif case == "long_key_name":
        provider.provide("k" * 257, b"x")
    elif case == "control_in_key_name":
        provider.provide("a\nb", b"x")
    elif case == "key_not_str":
        provider.provide(1, b"x")
    elif case == "data_not_bytes":
        provider.provide("a", "a str is not bytes")
    elif case == "provide_all_not_list":
        provider.provide_all({"key": "a", "data": b""})
    elif case == "numpy":
        grid = np.arange(12, dtype=np.float32).reshape(3, 4)
        provider.provide("contiguous", grid)
        provider.provide("transposed", grid.T)
        provider.provide("big_endian", np.array([1, 2], dtype=">i4"))
    elif case == "next_bad_amount":
        await options.params["case"].next("3")
    elif case == "set_position_too_far":
        options.params["case"].set_position(5)
    elif case == "huge_exception":
        raise ValueError("x" * 20_000 + " the end")
    elif case == "keep":
        previous["options"] = options
    elif case == "read_after":
        await previous["options"].params["case"].next()
    elif case == "provide_after":
        previous["options"].state_provider.provide("late", b"x")
    elif case == "shuffle_after":
        previous["options"].params["case"].shuffle()


model = {"createModelState": create_model_state}
