"""Reports what it sees of each mounted model: files, main.py, whether a write is refused,
and its state (under '<model>/state/<key>'). A param 'wait' (any tensor) makes it sleep 2 s
before looking, so that a test can change things under a running job."""

import asyncio
import json
import os


async def create(options):
    if "wait" in options.params:
        await asyncio.sleep(2)
    for model_id, other in options.other_models.items():
        root = other.mount_path
        files = sorted(
            os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
        )
        provide = options.state_provider.provide
        provide(f"{model_id}/files", json.dumps(files).encode())
        provide(f"{model_id}/path", root.encode())
        with open(os.path.join(root, "main.py"), "rb") as f:
            provide(f"{model_id}/main.py", f.read())
        try:
            with open(os.path.join(root, "written-by-a-mounter"), "wb") as f:
                f.write(b"x")
            outcome = b"allowed"
        except OSError as e:
            outcome = f"refused: {e.strerror}".encode()
        provide(f"{model_id}/write", outcome)
        for key, loader in other.state.items():
            provide(f"{model_id}/state/{key}", await loader.read())


model = {"createModelState": create}
