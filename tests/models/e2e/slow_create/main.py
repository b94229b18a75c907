import time


def create(options):
    time.sleep(60)


model = {"createModelState": create}
