"""Prints, for the job-log tests. Params (int32, all optional): ``tag`` (put in every line),
``mode``: 0 one line on each stream; 1 a flood of 100 MiB of lines on stdout, then a last
line; 2 a line, then 3 s of silence (a follower sees the first before the job ends), then
another; 3 raise after printing."""

import asyncio
import sys

print("chatty: imported", flush=True)
print("chatty: imported, on stderr", file=sys.stderr, flush=True)


async def _arg(options, name, default):
    if name not in options.params:
        return default
    return int((await options.params[name].next())[0].item())


async def create(options):
    tag = await _arg(options, "tag", 0)
    mode = await _arg(options, "mode", 0)
    if mode == 1:
        line = (f"flood {tag} " + "x" * 90 + "\n").encode()
        block = line * ((1 << 20) // len(line))
        for _ in range(100):
            sys.stdout.buffer.write(block)
        sys.stdout.buffer.flush()
    print(f"out {tag}", flush=True)
    print(f"err {tag}", file=sys.stderr, flush=True)
    if mode == 2:
        await asyncio.sleep(3)
        print(f"late {tag}", flush=True)
    if mode == 3:
        raise RuntimeError(f"chatty {tag} fails on purpose")
    options.state_provider.provide("tag", str(tag).encode())


model = {"createModelState": create}
