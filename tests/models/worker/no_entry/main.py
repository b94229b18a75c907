class Model:
    def train(self, options):
        pass


model = Model()
