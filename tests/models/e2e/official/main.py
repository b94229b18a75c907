"""Runs under the official runtime: params are raw tensor bytes there."""


async def create(options):
    loader = options.params["x"]
    data = await loader.next(loader.size())
    options.state_provider.provide("x", b"".join(data))
    options.state_provider.provide("runtime", b"decthings-model")


model = {"createModelState": create}
