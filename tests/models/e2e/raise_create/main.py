def create(options):
    raise ValueError("createModelState failed on purpose")


model = {"createModelState": create}
