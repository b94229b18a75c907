"""Runs inside the worker: tensor codec, worker protocol, model-author API. Never imports grpc."""
