def create_model_state(options):
    options.state_provider.provide_all(
        [{"key": "kind", "data": b"dict"}, {"key": "second", "data": memoryview(b"2")}]
    )


model = {"createModelState": create_model_state}
