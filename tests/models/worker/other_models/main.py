async def create_model_state(options):
    other = options.other_models["base"]
    options.state_provider.provide("mount_path", other.mount_path.encode())
    for key, loader in sorted(other.state.items()):
        data = await loader.read()
        assert isinstance(data, bytes), type(data)
        assert len(data) == loader.byte_size()
        options.state_provider.provide("copy-" + key, data)


model = {"createModelState": create_model_state}
