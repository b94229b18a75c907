"""Shuffles dataset params 'x' and 'y' as a group and checks that every row stays aligned.

Each x entry is [i, i * i] (f32) and its y entry is i + i * i (i64). The model raises on the
first misaligned row; else it provides 'order' (the i of each row read, as JSON).
"""

import json


async def create(options):
    x = options.params["x"]
    y = options.params["y"]
    x.shuffle_in_group([y])
    order = []
    while x.has_next():
        xs = await x.next(3)
        ys = await y.next(3)
        if len(xs) != len(ys):
            raise AssertionError(f"x gave {len(xs)} rows and y {len(ys)}")
        for a, b in zip(xs, ys, strict=True):
            i, square = a.numpy().tolist()
            if b.item() != i + square or square != i * i:
                raise AssertionError(f"row {len(order)}: x {a.numpy()} is not aligned with y {b}")
            order.append(int(i))
    if y.has_next():
        raise AssertionError("y has rows left after x ended")
    options.state_provider.provide("order", json.dumps(order).encode())


model = {"createModelState": create}
