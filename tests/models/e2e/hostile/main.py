"""Misbehaves on purpose; the 'what' param picks how, and the key 'outcome' says what happened.

probe_tcp HOST:PORT   connect to a TCP listener of the host
read PATH             read a file of the launcher (its database, another model's state)
write_model           write into its own (read-only) model folder
kill_parent           signal its parent process
fork_bomb             fork until refused
escape TAG            setsid + double fork a sleeper carrying TAG in its argv, then return
flood                 write 64 MiB to stdout and stderr
"""
import os
import socket
import subprocess
import sys


async def _arg(options, name):
    return (await options.params[name].next())[0].item()


async def create(options):
    what = await _arg(options, "what")
    arg = await _arg(options, "arg") if "arg" in options.params else ""
    outcome = "nothing"
    try:
        if what == "probe_tcp":
            host, port = arg.rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=2):
                outcome = "connected"
        elif what == "read":
            with open(arg, "rb") as f:
                outcome = f"read {len(f.read())} bytes"
        elif what == "write_model":
            with open("written.txt", "w") as f:
                f.write("x")
            outcome = "written"
        elif what == "kill_parent":
            os.kill(os.getppid(), 9)
            outcome = "killed"
        elif what == "fork_bomb":
            children = 0
            while children < 100_000:
                if os.fork() == 0:
                    import time

                    time.sleep(30)
                    os._exit(0)
                children += 1
            outcome = f"forked {children}"
        elif what == "escape":
            code = (
                "import os,sys,time\n"
                "if os.fork(): os._exit(0)\n"
                "os.setsid()\n"
                "if os.fork(): os._exit(0)\n"
                "time.sleep(600)\n"
            )
            subprocess.Popen([sys.executable, "-c", code, arg], start_new_session=True).wait()
            outcome = "escaped"
        elif what == "flood":
            block = b"x" * (1 << 20)
            for _ in range(64):
                sys.stdout.buffer.write(block)
                sys.stderr.buffer.write(block)
            outcome = "flooded"
    except Exception as e:  # the outcome is the point
        outcome = f"refused: {type(e).__name__}: {e}"
    options.state_provider.provide("outcome", outcome.encode())


model = {"createModelState": create}
