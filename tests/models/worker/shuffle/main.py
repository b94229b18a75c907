"""Shuffles x and y together, then x alone, and reports the orders it read."""
import json


async def read_all(loader):
    loader.set_position(0)
    return [t.item() for t in await loader.next(loader.size())]


async def create_model_state(options):
    x, y = options.params["x"], options.params["y"]
    x.shuffle_in_group([y])
    grouped = {"x": await read_all(x), "y": await read_all(y)}
    x.shuffle()
    alone = await read_all(x)
    options.state_provider.provide("orders", json.dumps({"grouped": grouped, "alone": alone}).encode())


model = {"createModelState": create_model_state}
