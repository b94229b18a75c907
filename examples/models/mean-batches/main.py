"""The mean of many f32 vectors, read in batches of 64 so that memory stays small."""
import numpy as np

BATCH = 64


async def create_model_state(options):
    x = options.params["x"]
    total = None
    count = 0
    while x.has_next():
        batch = np.stack([t.numpy() for t in await x.next(BATCH)]).astype(np.float64)
        total = batch.sum(axis=0) if total is None else total + batch.sum(axis=0)
        count += len(batch)
    if count == 0:
        raise ValueError('param "x" is empty: there is no mean of no vectors')
    options.state_provider.provide("mean", (total / count).astype("<f8"))
    options.state_provider.provide("count", np.array([count], dtype="<i8"))


model = {"createModelState": create_model_state}
