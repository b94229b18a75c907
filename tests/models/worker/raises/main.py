class Model:
    def createModelState(self, options):
        options.state_provider.provide("partial", b"x")
        raise RuntimeError("boom inside createModelState")


model = Model()
