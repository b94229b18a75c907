"""A stand-in launcher: ``owner.py ROOT TAG`` starts a sandboxed escape.py worker, says
"started", then idles until it is killed (the test kills it with SIGKILL)."""

import asyncio
import sys
from pathlib import Path

from launcher.sandbox import create_sandbox
from tests.support.hostile.harness import Place, config_for, plan_for


async def main() -> None:
    place = Place(Path(sys.argv[1])).make()
    sandbox = await create_sandbox(config_for(place))
    worker = await sandbox.start(plan_for(place, "escape.py", sys.argv[2], "stay"))
    for _ in range(200):
        if "escaped" in worker.log_tail():
            break
        await asyncio.sleep(0.05)
    print("started", flush=True)
    await asyncio.sleep(3600)


asyncio.run(main())
