"""Reports the GPUs it was given (CUDA_VISIBLE_DEVICES), holding them for 'hold' seconds."""
import asyncio
import os


async def create(options):
    hold = 0.0
    if "hold" in options.params:
        hold = float((await options.params["hold"].next())[0].item())
    await asyncio.sleep(hold)
    options.state_provider.provide("gpus", os.environ.get("CUDA_VISIBLE_DEVICES", "").encode())


model = {"createModelState": create}
