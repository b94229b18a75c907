"""Reads a big dataset param 'x' in batches of 16; provides each entry's CRC-32 and sum.

State keys: 'crc' (u32 per entry, zlib.crc32 of its elements' bytes) and 'sum' (f64 per
entry), in the order read; 'count' (i64: entries read).
"""

import zlib

import numpy as np


async def create(options):
    loader = options.params["x"]
    crcs = []
    sums = []
    while loader.has_next():
        for tensor in await loader.next(16):
            array = tensor.numpy()
            crcs.append(zlib.crc32(array))
            sums.append(float(array.sum(dtype=np.float64)))
    options.state_provider.provide("crc", np.array(crcs, dtype=np.uint32).tobytes())
    options.state_provider.provide("sum", np.array(sums, dtype=np.float64).tobytes())
    options.state_provider.provide("count", np.array([len(crcs)], dtype=np.int64).tobytes())


model = {"createModelState": create}
