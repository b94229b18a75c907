"""Sums a big inline param 'x' (f32 tensors) and provides the sum and element count."""
import numpy as np


async def create(options):
    total = 0.0
    count = 0
    loader = options.params["x"]
    while loader.has_next():
        for tensor in await loader.next(4):
            array = tensor.numpy()
            total += float(array.sum(dtype=np.float64))
            count += array.size
    options.state_provider.provide("sum", np.array([total]).tobytes())
    options.state_provider.provide("count", np.array([count], dtype=np.int64).tobytes())


model = {"createModelState": create}
