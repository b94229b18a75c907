"""The smallest model: no params, one state key."""


class Hello:
    def createModelState(self, options):
        options.state_provider.provide("greeting", b"hello")


model = Hello()
