"""SDK compatibility probe, plain style: each loader element is used as its serialized bytes,
as a model written for the official runtime does."""

import json


async def createModelState(options):
    report = {}
    for name in sorted(options.params):
        loader = options.params[name]
        elements = await loader.next(loader.size())
        options.state_provider.provide(name, b"".join(elements))
        report[name] = {
            "count": len(elements),
            "lengths": [len(e) for e in elements],
            "heads": [bytes(e[:2]).hex() for e in elements],
            "same": all(bytes(e) == e and bytes(memoryview(e)) == bytes(e) for e in elements),
        }
    options.state_provider.provide_all(
        [{"key": "report", "data": json.dumps(report, sort_keys=True).encode()}]
    )


model = {"createModelState": createModelState}
