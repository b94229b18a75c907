"""Reads the state of every mounted model and copies it under '<model>/<key>'."""
import os


async def create(options):
    for model_id, other in options.other_models.items():
        assert os.path.isdir(other.mount_path), other.mount_path
        for key, loader in other.state.items():
            options.state_provider.provide(f"{model_id}/{key}", await loader.read())


model = {"createModelState": create}
