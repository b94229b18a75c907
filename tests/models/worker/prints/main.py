import sys

print("\x00\x00\x00\x00\x01 printed at import, looks like a frame")
sys.stdout.flush()


def create_model_state(options):
    for i in range(2000):
        print("line", i, "\x00\x01" * 10)
        print("to stderr", i, file=sys.stderr)
    sys.stdout.write("\x01" * 100000)
    options.state_provider.provide("after_prints", b"still fine")


model = {"createModelState": create_model_state}
