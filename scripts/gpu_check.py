"""``make gpu-check``: on a machine with NVIDIA GPUs, run a model that calls the CUDA driver
through ctypes (cuInit, device count, a 1 MiB allocation) inside the sandbox, once on a
temporary launcher and once on a persistent one, and print what the worker saw (its
CUDA_VISIBLE_DEVICES, the /dev/nvidia* nodes, the driver's answers).

Where there is no NVIDIA GPU (no nvidia-smi, or it lists none) it says so and exits 0.
Exit status 1: a GPU exists but the sandboxed worker could not use it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from launcher.client import LauncherClient
from launcher.sandbox.gpus import detect_nvidia, parse_fake_inventory

PROBE = """
import ctypes, json, os


def probe():
    out = {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
           "dev": sorted(n for n in os.listdir("/dev") if n.startswith("nvidia"))}
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        out["error"] = f"cannot load libcuda.so.1: {exc}"
        return out
    def call(name, *args):
        code = getattr(cuda, name)(*args)
        out[name] = code
        if code != 0:
            raise RuntimeError(f"{name} returned CUDA error {code}")
    try:
        count, device = ctypes.c_int(), ctypes.c_int()
        context, pointer = ctypes.c_void_p(), ctypes.c_uint64()
        call("cuInit", 0)
        call("cuDeviceGetCount", ctypes.byref(count))
        out["device_count"] = count.value
        call("cuDeviceGet", ctypes.byref(device), 0)
        name = ctypes.create_string_buffer(256)
        call("cuDeviceGetName", name, 256, device)
        out["device_name"] = name.value.decode()
        call("cuCtxCreate_v2", ctypes.byref(context), 0, device)
        call("cuMemAlloc_v2", ctypes.byref(pointer), 1 << 20)
        call("cuMemFree_v2", pointer)
        call("cuCtxDestroy_v2", context)
        out["allocated_1MiB"] = True
    except Exception as exc:
        out["error"] = str(exc)
    return out


async def create(options):
    options.state_provider.provide("probe", json.dumps(probe()).encode())


model = {"createModelState": create}
"""


def _wait_serving(address: str, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gpu-check: the launcher exited with {proc.returncode}")
        try:
            with LauncherClient(address) as client:
                if "result" in client.model.get_models():
                    return
        except Exception:
            time.sleep(0.2)
    raise SystemExit("gpu-check: the launcher did not start serving")


def _probe(client: LauncherClient, location: dict) -> dict:
    res = client.model.create_state(
        model_id="cuda_probe", name="gpu-check", params=[], execution_location=location
    )
    if "success" not in res.get("result", {}):
        return {"error": f"createState did not succeed: {res}"}
    state_id = res["result"]["success"]["stateId"]
    data = client.model.get_model_state(model_id="cuda_probe", state_id=state_id)
    return dict(json.loads(data["result"]["data"][0]["data"]))


def main() -> int:
    # GPU_CHECK_FAKE_GPUS=0:H100 runs the plumbing on a machine without GPUs (the probe then
    # reports that libcuda cannot be loaded, and the check fails: it proves nothing about CUDA).
    fake = os.environ.get("GPU_CHECK_FAKE_GPUS", "")
    gpus = parse_fake_inventory(fake) if fake else detect_nvidia()
    if not gpus:
        print(
            "gpu-check: no NVIDIA GPU on this machine (nvidia-smi absent or lists none); "
            "nothing to check."
        )
        return 0
    print("gpu-check: GPUs here: " + ", ".join(f"{g.id}: {g.model}" for g in gpus))
    spec = {"cpus": 1, "memoryMebibytes": 4096, "gpus": {"model": gpus[0].model, "count": 1}}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        root = Path(tmp)
        (root / "models" / "cuda_probe").mkdir(parents=True)
        (root / "models" / "cuda_probe" / "main.py").write_text(PROBE)
        address = f"unix://{root}/launcher.sock"
        proc = subprocess.Popen(
            [sys.executable, "-m", "launcher", "serve", "--root", str(root), "--listen", address]
            + (["--fake-gpus", fake] if fake else []),
            stdout=open(root / "launcher.log", "wb"),
            stderr=subprocess.STDOUT,
        )
        failed = False
        try:
            _wait_serving(address, proc)
            with LauncherClient(address) as client:
                temporary = {"type": "temporaryLauncher", "spec": spec}
                made = client.persistent_launcher.create_persistent_launcher(
                    name="gpu-check", spec=spec
                )
                persistent = {
                    "type": "persistentLauncher",
                    "persistentLauncherId": made["result"]["persistentLauncherId"],
                }
                for label, location in (("temporary", temporary), ("persistent", persistent)):
                    seen = _probe(client, location)
                    print(f"gpu-check: {label} launcher's worker saw {json.dumps(seen)}")
                    failed |= not seen.get("allocated_1MiB")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        if failed:
            print("gpu-check: FAILED; the launcher's log:")
            print((root / "launcher.log").read_text(errors="replace")[-4000:])
            return 1
    print("gpu-check: ok, the sandboxed workers initialized CUDA and allocated on their GPU")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
