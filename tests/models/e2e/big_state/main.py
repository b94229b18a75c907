"""Provides three keys whose size comes from the param 'mib' (an i64 scalar), MiB each."""
import numpy as np


async def create(options):
    mib = int((await options.params["mib"].next())[0].item())
    block = np.full(mib << 20, 7, dtype=np.uint8)
    for key in ("a", "b", "c"):
        options.state_provider.provide(key, block)


model = {"createModelState": create}
