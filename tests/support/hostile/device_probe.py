"""Report the GPU device nodes visible in /dev, which can be opened, and CUDA_VISIBLE_DEVICES."""

import json
import os
import sys

nodes = sorted(n for n in os.listdir("/dev") if n.startswith("nvidia"))
opened = {}
for name in [*nodes, *sys.argv[1:]]:
    try:
        os.close(os.open(f"/dev/{name}", os.O_RDWR))
        opened[name] = "ok"
    except OSError as exc:
        opened[name] = exc.strerror
print(json.dumps({"nodes": nodes, "open": opened, "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}))
