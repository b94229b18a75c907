"""Builds ``CreateModelStateOptions`` from the host's typed ``callCreateModelState`` command.

The command's fields were checked when it was parsed (``runtime.messages``); what is left here
is what only makes sense for the options, such as a param name given twice, so that a
malformed command becomes one clear error result instead of a ``KeyError`` deep inside a model.
"""

from __future__ import annotations

from runtime._call import Call
from runtime.api import CreateModelStateOptions, DataLoader, OtherModel, StateLoader, StateProvider
from runtime.messages import CallCreateModelState


class BadCommand(ValueError):
    """The host's command params do not have the protocol's shape."""


def build_options(call: Call, command: CallCreateModelState) -> CreateModelStateOptions:
    loaders = {}
    for i, p in enumerate(command.params):
        if p.name in loaders:
            raise BadCommand(f"params[{i}]: the name {p.name!r} appears twice")
        loaders[p.name] = DataLoader(call, p.name, p.dataset, p.amount, p.total_byte_size)
    others = {}
    for other in command.other_models:
        state = {
            k.name: StateLoader(call, k.name, k.dataset, k.amount, k.total_byte_size)
            for k in other.state
        }
        others[other.id] = OtherModel(other.mount_path, state)
    return CreateModelStateOptions(loaders, StateProvider(call), others)
