"""The seed's example, with the platform's own Python client, against ``make run``.

    make run                                       # in one terminal
    .venv/bin/python examples/platform_client.py   # in another

The client is PyPI ``decthings-api`` (installed with the dev extras); nothing in it is
changed: only ``http_server_address`` points at this launcher. The API key is read from
``auth.txt`` when that file exists (a launcher with keys: ``launcher keys create``), as in the
seed's example; without keys the launcher needs none.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from decthings_api import DecthingsClientSync
from decthings_api.tensor import DecthingsTensor

ADDRESS = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080/v0"


def scalar(value: int) -> DecthingsTensor:
    return DecthingsTensor(np.array(value, dtype=np.int32), "i32", [])


def main() -> int:
    auth = Path("auth.txt")
    api_key = auth.read_text().strip() if auth.exists() else None
    client = DecthingsClientSync(api_key=api_key, http_server_address=ADDRESS)
    try:
        result, error = client.model.create_state(
            {
                "modelId": "linear",
                "name": "init",
                "params": [
                    {"name": "input_size", "data": [scalar(3)]},
                    {"name": "output_size", "data": [scalar(2)]},
                ],
                "executionLocation": {
                    "type": "temporaryLauncher",
                    "spec": {"cpus": 1, "memoryMebibytes": 512},
                },
            }
        )
    except Exception as e:  # the client raises on connection issues only
        print(f"could not reach the launcher at {ADDRESS}: {e}")
        return 1
    if error is not None:
        print("the launcher sent an error:", error)  # e.g. {'code': 'bad_credentials'}
        return 1
    print(result)  # {'success': {'durations': {'total': ..., ...}, 'stateId': 's-...'}}
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
