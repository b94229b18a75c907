"""Counts createModelState calls in this worker process: a reused warm session counts on."""
import os

calls = 0


def create(options):
    global calls
    calls += 1
    options.state_provider.provide("calls", str(calls).encode())
    options.state_provider.provide("pid", str(os.getpid()).encode())


model = {"createModelState": create}
