import json
import sys

LOADED_BEFORE_MODEL = sorted(sys.modules)


def create_model_state(options):
    options.state_provider.provide("modules", json.dumps(LOADED_BEFORE_MODEL).encode())


model = {"createModelState": create_model_state}
