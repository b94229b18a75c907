"""Benchmark model: imports nothing and provides one small key (what a trivial job costs)."""


async def create(options):
    options.state_provider.provide("k", b"bench")


model = {"createModelState": create}
