"""The raw gRPC reference: a bare server whose one client-streaming method counts bytes.

Run as ``python -m bench.rawgrpc ADDRESS`` (it prints "ready" once serving); ``upload`` sends a
buffer to it in 1 MiB chunks, as a client-streaming call, and returns the count it answered.
No protobuf: requests and the answer are raw bytes, so this is gRPC's own cost.
"""

from __future__ import annotations

import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path

import grpc

METHOD = "/bench.Raw/Upload"
CHUNK = 1 << 20
START_TIMEOUT = 30.0


def _count(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
    return str(sum(len(r) for r in requests)).encode()


def serve(address: str) -> None:
    handler = grpc.method_handlers_generic_handler(
        "bench.Raw", {"Upload": grpc.stream_unary_rpc_method_handler(_count)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    server.add_insecure_port(address)
    server.start()
    print("ready", flush=True)
    # Lives until its parent closes our stdin (or kills us).
    sys.stdin.read()
    server.stop(0)


def _chunks(buffer: memoryview, repeat: int) -> Iterator[bytes]:
    for _ in range(repeat):
        for i in range(0, len(buffer), CHUNK):
            yield bytes(buffer[i : i + CHUNK])


def upload(address: str, buffer: memoryview, repeat: int = 1, timeout: float = 300.0) -> int:
    """Sends ``buffer`` ``repeat`` times over, in 1 MiB chunks; the byte count answered."""
    with grpc.insecure_channel(address) as channel:
        call = channel.stream_unary(METHOD)
        return int(call(_chunks(buffer, repeat), timeout=timeout))


@contextmanager
def raw_server() -> Iterator[str]:
    """A raw server in its own process on a Unix socket in a temporary folder; yields its
    address."""
    with tempfile.TemporaryDirectory(prefix="bench-raw-") as folder:
        yield from _serving(f"unix://{folder}/raw.sock")


def _serving(address: str) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.rawgrpc", address],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parent.parent,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
        line = proc.stdout.readline() if ready else b"(nothing in time)"
        if line.strip() != b"ready":
            raise RuntimeError(f"the raw gRPC server did not start: {line!r}")
        yield address
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def timed_upload(address: str, buffer: memoryview, repeat: int = 1) -> float:
    start = time.perf_counter()
    got = upload(address, buffer, repeat)
    elapsed = time.perf_counter() - start
    if got != len(buffer) * repeat:
        raise RuntimeError(f"the raw server counted {got} bytes of {len(buffer) * repeat}")
    return elapsed


def raw_upload_times(
    buffer: memoryview, repeat: int, rounds: int, full_warm_up: bool = False
) -> list[float]:
    """Seconds of ``rounds`` uploads to a fresh raw server, after a warm-up upload (small, or
    the whole buffer with ``full_warm_up``)."""
    with raw_server() as address:
        timed_upload(address, buffer if full_warm_up else buffer[:CHUNK])
        return [timed_upload(address, buffer, repeat) for _ in range(rounds)]


if __name__ == "__main__":
    serve(sys.argv[1])
