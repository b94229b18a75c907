"""Asks for endless phase limits in model.toml, then takes 30 s to create its state."""
import time


def create(options):
    time.sleep(30)


model = {"createModelState": create}
