"""Attacks the launcher through the worker protocol; the param 'what' picks how.

shuffle_flood   shuffle the param 'x' 200 times, then read it
read_only       read the param 'x' without shuffling (the reference for shuffle_flood)
json_flood      write 10 provideStateData events of 15 MB of JSON each (valid, padded), then
                one of 15 MB of escaped text in a field the protocol does not have
tiny_flood      write 200,000 empty (valid) provideStateData events, then return
huge_details    answer the call with 8 MiB of exception details (commas, quotes), then hang

The frames are written straight to the runtime's own socket, as any code in the worker could.
"""

import asyncio
import gc
import json
import struct

from runtime import messages, protocol


def _conn():
    worker = next(o for o in gc.get_objects() if type(o).__name__ == "_Worker")
    return worker._conn


def _raw_message(body: bytes) -> list[bytes]:
    return [bytes([protocol.MESSAGE]) + struct.pack(">IQ", 0, len(body)), body, b"\x00"]


async def create(options):
    what = (await options.params["what"].next())[0].item()
    command_id = options.state_provider._call.command_id
    if what in ("shuffle_flood", "read_only"):
        x = options.params["x"]
        for _ in range(200 if what == "shuffle_flood" else 0):
            x.shuffle()
        await x.next(1)
    elif what == "json_flood":
        head = (
            b'{"event":"provideStateData","params":{"commandId":' + json.dumps(command_id).encode()
        )
        padded = head + b',"names":[]' + b" " * (15 << 20) + b"}}"
        for _ in range(10):
            _conn().send(_raw_message(padded))
        escaped = head + b',"names":[],"pad":"' + b"\\u00e9" * ((15 << 20) // 6) + b'"}}'
        _conn().send(_raw_message(escaped))
        await asyncio.sleep(3600)
    elif what == "tiny_flood":
        frame = b"".join(messages.ProvideStateData(command_id, ()).encode([]))
        for _ in range(200):
            _conn().send([frame * 1000])
    elif what == "huge_details":
        lines = 'File "model.py", line 3, in create: a, b = {"k": 1}\n' * ((8 << 20) // 52)
        error = messages.ExceptionError("Traceback: " + lines + " the end")
        _conn().send(messages.CallResult(command_id, error).encode())
        await asyncio.sleep(3600)


model = {"createModelState": create}
