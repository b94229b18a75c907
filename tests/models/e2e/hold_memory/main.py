"""Holds 'mib' MiB of touched memory for 'seconds' seconds, then provides a small key."""
import asyncio

import numpy as np


async def create(options):
    mib = int((await options.params["mib"].next())[0].item())
    seconds = float((await options.params["seconds"].next())[0].item())
    block = np.ones(mib << 20, dtype=np.uint8)  # touched: resident
    await asyncio.sleep(seconds)
    options.state_provider.provide("held", str(int(block.sum()) >> 20).encode())


model = {"createModelState": create}
