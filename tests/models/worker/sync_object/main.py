class Model:
    def createModelState(self, options):
        options.state_provider.provide("kind", b"sync object")


model = Model()
