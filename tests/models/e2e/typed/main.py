model = {"createModelState": lambda options: options.state_provider.provide("k", b"v")}
