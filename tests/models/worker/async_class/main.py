import asyncio


class Model:
    async def createModelState(self, options):
        await asyncio.sleep(0)
        options.state_provider.provide("kind", bytearray(b"async class instance"))


model = Model()
