# One entry point for set-up, serving, tests and benchmarks. Needs only python3 and make.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
GENERATED := launcher/v1/.generated
PROTOS := $(wildcard proto/launcher/v1/*.proto)
ROOT ?= .launcher-data
LISTEN ?= 127.0.0.1:50051
# The platform's own HTTP API, for the platform's clients (decthings-api, @decthings/api-client).
HTTP ?= 127.0.0.1:8080
PYTEST_ARGS ?=

.PHONY: setup run test bench check fuzz soak gpu-check clean

setup: $(GENERATED)

$(INSTALLED): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,decthings,ray]'
	touch $@

$(GENERATED): $(INSTALLED) $(PROTOS)
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --grpc_python_out=. --pyi_out=. $(PROTOS)
	touch launcher/v1/__init__.py $@

run: setup
	mkdir -p $(ROOT)
	[ -e $(ROOT)/models ] || ln -s ../examples/models $(ROOT)/models
	$(BIN)/launcher serve --root $(ROOT) --listen $(LISTEN) --http $(HTTP)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup
	$(BIN)/python -m bench

check: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy launcher runtime

fuzz: setup
	$(BIN)/python -m pytest tests -m fuzz --hypothesis-profile=long --timeout=0 $(PYTEST_ARGS)

# The random-kill loop and the load test, kept going for SOAK_SECONDS each (make test: short runs).
SOAK_SECONDS ?= 300
soak: setup
	LAUNCHER_SOAK_SECONDS=$(SOAK_SECONDS) $(BIN)/python -m pytest -s --timeout=0 \
		tests/crash/test_crash_loop.py tests/load/test_load.py $(PYTEST_ARGS)

# A model calling the CUDA driver (ctypes) in the sandbox, temporary and persistent launcher;
# exits 0 with a message where there is no NVIDIA GPU.
gpu-check: setup
	$(BIN)/python scripts/gpu_check.py

clean:
	rm -rf $(VENV) launcher/v1 .pytest_cache .mypy_cache .ruff_cache
