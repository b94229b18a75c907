"""Execution locations used across tests."""

TEMPORARY = {"type": "temporaryLauncher", "spec": {"cpus": 1, "memoryMebibytes": 512}}
