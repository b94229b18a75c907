import os


def create(options):
    os._exit(3)


model = {"createModelState": create}
