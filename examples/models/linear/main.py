"""A linear layer's initial state: weights (input_size x output_size) and bias, float32."""
import numpy as np


async def scalar(options, name, default=None):
    loader = options.params.get(name)
    if loader is None:
        if default is None:
            raise ValueError(f"param {name!r} is required")
        return default
    tensors = await loader.next()
    if len(tensors) != 1 or tensors[0].type() not in ("i32", "i64") or tensors[0].shape() not in ((), (1,)):
        raise ValueError(f"param {name!r} must be one i32 or i64 scalar")
    value = int(tensors[0].numpy().reshape(-1)[0])
    if value <= 0:
        raise ValueError(f"param {name!r} must be positive, not {value}")
    return value


class Linear:
    async def createModelState(self, options):
        inputs = await scalar(options, "input_size")
        outputs = await scalar(options, "output_size")
        seed = await scalar(options, "seed", default=1)
        rng = np.random.default_rng(seed)
        # Glorot-uniform initialisation keeps the layer's output variance near its input's.
        limit = np.sqrt(6.0 / (inputs + outputs))
        weights = rng.uniform(-limit, limit, size=(inputs, outputs)).astype("<f4")
        options.state_provider.provide_all(
            [
                {"key": "weights", "data": weights},
                {"key": "bias", "data": np.zeros(outputs, dtype="<f4")},
            ]
        )


model = Linear()
