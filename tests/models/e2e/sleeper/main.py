import asyncio


async def create(options):
    await asyncio.sleep(120)


model = {"createModelState": create}
