"""SDK compatibility probe, the SDK's own style: a class wrapped with make_model, whose loaders
yield DecthingsTensor objects, with the SDK template's instantiateModel stubs."""

import json

from decthings_api import DecthingsTensor
from decthings_model import make_model


class Model:
    async def createModelState(self, options):
        report = {}
        for name in sorted(options.params):
            loader = options.params[name]
            tensors = await loader.next(loader.size())
            if not all(isinstance(t, DecthingsTensor) for t in tensors):
                raise TypeError(f"{name}: expected DecthingsTensor, got {type(tensors[0])}")
            options.state_provider.provide(name, b"".join(t.serialize() for t in tensors))
            report[name] = [[t.type(), list(t.shape())] for t in tensors]
        options.state_provider.provide("report", json.dumps(report, sort_keys=True).encode())

    async def instantiateModel(self, options):
        return Instantiated()


class Instantiated:
    async def evaluate(self, options):
        return []

    async def train(self, options):
        return None

    async def getModelState(self, options):
        return None

    def dispose(self):
        return None


model = make_model(Model())
