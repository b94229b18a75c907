"""Reads every entry of param 'x' in batches and provides what it read, as JSON.

Optional params: 'batch' (entries per next() call, default 2) and 'sleep' (seconds to wait
after each batch, so that a test can change the dataset while the job reads it).
State keys: 'entries' (each entry's type, shape and values, in the order read) and 'batches'
(the position before each batch and how many entries it returned).
"""

import asyncio
import json


async def scalar(params, name, default):
    if name not in params:
        return default
    return (await params[name].next())[0].item()


async def create(options):
    params = options.params
    batch = int(await scalar(params, "batch", 2))
    pause = float(await scalar(params, "sleep", 0.0))
    loader = params["x"]
    entries = []
    batches = []
    while loader.has_next():
        position = loader.position()
        got = await loader.next(batch)
        batches.append([position, len(got)])
        for tensor in got:
            values = tensor.numpy().tolist()
            entries.append({"type": tensor.type(), "shape": list(tensor.shape()), "values": values})
        if pause:
            await asyncio.sleep(pause)
    if len(entries) != loader.size():
        raise AssertionError(f"read {len(entries)} entries of {loader.size()}")
    options.state_provider.provide("entries", json.dumps(entries).encode())
    options.state_provider.provide("batches", json.dumps(batches).encode())


model = {"createModelState": create}
