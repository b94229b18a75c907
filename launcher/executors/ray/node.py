"""``launcher run-job``: the node side of one worker on a Ray cluster.

Reads the job (JSON) on stdin; builds the same sandbox and worker as the hub would; dials
the hub's relay (control first: hello with this node's sandbox layers; then data, once the
worker connected) and splices the unchanged worker protocol between the worker's Unix socket
and the hub. It heartbeats, kills the worker when the hub says so or goes away, and reports
how the worker ended (exit code / signal / oom, log tail) before exiting.

Started *ahead* (``--ahead NODE_DIR [DISABLED,...]``: the Ray side keeps one such spare for the
next job, ``task``), it does what needs no job before reading it: its imports, its folder, the
sandbox's layers detected and the zygote started (so the worker is forked from it, the runtime
already imported, instead of an interpreter started for it). It is named ``run-job-spare``
(``/proc/PID/comm``) until its job arrives; EOF instead of a job ends it. A job for another
node folder or other sandbox settings than it prepared for is run as a fresh ``run-job``
would run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import shutil
import ssl
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launcher import outcomes as oc
from launcher.executors.base import PhaseFailed
from launcher.executors.connect import start_connected
from launcher.executors.plan import worker_plan
from launcher.executors.ray import control
from launcher.executors.ray.jobspec import NodeJob
from launcher.sandbox import SandboxConfig, create_sandbox, libc
from launcher.sandbox.layered import LayeredSandbox
from launcher.sandbox.types import WorkerProcess

log = logging.getLogger("launcher.node")

CHUNK = 1 << 20


async def dial(job: NodeJob, channel: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, _, port = job.relay.rpartition(":")
    tls = ssl.create_default_context(cadata=job.relay_ca) if job.relay_ca else None
    reader, writer = await asyncio.open_connection(
        host.strip("[]"), int(port), limit=4 << 20, ssl=tls
    )
    writer.write(control.handshake(channel, job.token))
    answer = await asyncio.wait_for(reader.readuntil(b"\n"), 10)
    if answer != b"OK\n":
        writer.close()
        raise ConnectionRefusedError(f"the hub refused the {channel} channel: {answer!r}")
    return reader, writer


async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    """Copy until EOF, at most one chunk in flight (memory stays bounded)."""
    try:
        while chunk := await src.read(CHUNK):
            dst.write(chunk)
            await dst.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.close()


#: The file of a run folder that its ``run-job`` holds locked while it lives.
ALIVE = ".alive"
#: ``/proc/PID/comm`` of a ``run-job`` started ahead, until its job arrives.
SPARE_NAME = b"run-job-spare"
NAME = b"run-job"


@dataclass
class Prepared:
    """A run folder and its sandbox, made before the job is known."""

    node_dir: str
    disable: frozenset[str]
    work: Path
    sandbox: LayeredSandbox
    alive: int  # flock'd ``work/.alive``: held while this process lives (``_remove_leftovers``)

    def fits(self, job: NodeJob) -> bool:
        return job.node_dir == self.node_dir and frozenset(job.sandbox_disable) == self.disable


async def prepare(node_dir: str, disable: frozenset[str], ahead: bool) -> Prepared:
    """This process's run folder and sandbox. ``ahead``: with the zygote started (the only
    spawn of this process is then a fork; without a spare, which a second job would need),
    else without one (starting it would cost the job more than it saves)."""
    work = Path(node_dir) / "run" / f"j{os.getpid()}"
    if ahead:  # off any job's path: what killed run-jobs left behind
        await asyncio.to_thread(_remove_leftovers, work.parent)
    work.mkdir(parents=True, mode=0o711)
    alive = os.open(work / ALIVE, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    fcntl.flock(alive, fcntl.LOCK_EX)
    try:
        sandbox = await create_sandbox(
            SandboxConfig(
                state_dir=work / "sandbox",
                disable=disable | ({"spare"} if ahead else {"zygote"}),
                bindable_dirs=(Path(node_dir) / "bundles",),
            )
        )
        if ahead:
            await sandbox.warm_up()
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        os.close(alive)
        raise
    return Prepared(node_dir, disable, work, sandbox, alive)


def _remove_leftovers(run_dir: Path) -> None:
    """The run folders (``j<pid>``) of ``run-job`` processes that are gone: killed, with their
    Ray worker, before they could tidy up (a spare never used, a cancelled job)."""
    try:
        entries = list(os.scandir(run_dir))
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if name[:1] == "j" and name[1:].isdigit() and not _in_use(Path(entry.path), name[1:]):
            shutil.rmtree(entry.path, ignore_errors=True)


def _in_use(folder: Path, pid: str) -> bool:
    """Whether the ``run-job`` of ``folder`` lives: it holds a lock on its ``.alive`` (seen
    from any pid namespace sharing the node folder); a folder without one (made a moment ago,
    or by an older launcher) is its pid's while that pid lives."""
    try:
        fd = os.open(folder / ALIVE, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, OverflowError):
            pass  # alive (another user's), or no such pid at all: left alone
        return True
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


async def _dispose(prepared: Prepared) -> None:
    await prepared.sandbox.close()
    shutil.rmtree(prepared.work, ignore_errors=True)
    os.close(prepared.alive)


class NodeRun:
    def __init__(self, job: NodeJob) -> None:
        self.job = job
        self.process: WorkerProcess | None = None
        self.ctl_w: asyncio.StreamWriter | None = None
        self.killed = asyncio.Event()

    def send(self, kind: str, **fields: Any) -> None:
        if self.ctl_w is not None and not self.ctl_w.is_closing():
            self.ctl_w.write(control.encode(kind, **fields))

    def _output(self, stream: str, data: bytes) -> None:
        for start in range(0, len(data), 64 << 10):
            chunk = data[start : start + (64 << 10)]
            self.send("output", stream=stream, data=chunk.decode("utf-8", "replace"))

    async def _listen(self, reader: asyncio.StreamReader) -> None:
        """The hub's orders: ``kill``; EOF or silence (the hub went away) means kill too."""
        try:
            while True:
                async with asyncio.timeout(control.HUB_SILENCE):
                    line = await control.read_line(reader)
                if not line or control.decode(line) == "kill":
                    break
        except (control.ControlError, OSError, TimeoutError):
            pass
        self.killed.set()
        if self.process is not None:
            self.process.kill()

    async def _heartbeat(self) -> None:
        while True:
            self.send("heartbeat")
            await asyncio.sleep(control.HEARTBEAT)

    async def run(self, prepared: Prepared | None = None) -> int:
        job = self.job
        if prepared is None or not prepared.fits(job):
            if prepared is not None:
                await _dispose(prepared)
            prepared = await prepare(job.node_dir, frozenset(job.sandbox_disable), ahead=False)
        sandbox, work = prepared.sandbox, prepared.work
        ctl_r, self.ctl_w = await dial(job, "control")
        self.send(
            "hello",
            nodeId=job.node_id,
            layers=sandbox.layers(),
            modelDir=job.model_dir,
            pid=os.getpid(),
            mounts=job.mount_dirs,
        )
        tasks = [
            asyncio.create_task(self._listen(ctl_r)),
            asyncio.create_task(self._heartbeat()),
        ]
        try:
            return await self._worker(sandbox, work)
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(OSError):
                await self.ctl_w.drain()
            self.ctl_w.close()
            if job.group is not None:  # a no-op while other workers of the launcher live
                sandbox.release_group(job.group)
            await _dispose(prepared)

    async def _worker(self, sandbox: Any, work: Path) -> int:
        job = self.job
        wdir = work / "w"
        wdir.mkdir(mode=0o700)
        mounts = [Path(folder) for folder in job.mount_dirs.values()]
        plan = worker_plan(
            job.runtime,
            job.fresh_process,
            Path(job.model_dir),
            wdir,
            job.spec,
            mounts,
            job.gpu_ids,
            job.group,
        )
        try:
            self.process, wr, ww = await start_connected(sandbox, plan, job.connect_limit)
        except PhaseFailed as e:
            outcome = e.outcome
            if isinstance(outcome, oc.CodeTerminated):
                self.send(
                    "terminated",
                    exitCode=outcome.exit_code,
                    signal=outcome.signal,
                    oom=outcome.oom,
                    logTail="",
                )
            else:
                self.send("startTimeout")
            return 0
        process = self.process
        process.sink = self._output
        if self.killed.is_set():
            process.kill()
        try:
            data_r, data_w = await dial(job, "data")
        except (OSError, ConnectionRefusedError, TimeoutError):
            process.kill()
            await process.close()
            return 1
        pumps = [
            asyncio.create_task(pump(wr, data_w)),
            asyncio.create_task(pump(data_r, ww)),
        ]
        termination = await process.wait()
        process.drain_output()
        await process.close()
        for task in pumps:
            task.cancel()
        self.send(
            "terminated",
            exitCode=termination.exit_code,
            signal=termination.signal,
            oom=termination.oom,
            logTail=process.log_tail()[-(control.MAX_LINE // 4) :],
        )
        return 0


def _read_job(raw: bytes) -> NodeJob | None:
    try:
        return NodeJob.from_json(json.loads(raw))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        print(f"run-job: bad job description: {e!r}", file=sys.stderr)
        return None


def _stdin_job() -> asyncio.Future[bytes]:
    """Stdin read to EOF (at most 1 MiB) in a thread that never holds up the exit."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future[bytes] = loop.create_future()

    def read() -> None:
        try:
            data = sys.stdin.buffer.read(1 << 20)
        except OSError:
            data = b""

        def deliver() -> None:
            if not got.done():
                got.set_result(data)

        loop.call_soon_threadsafe(deliver)

    threading.Thread(target=read, name="job-reader", daemon=True).start()
    return got


def _full_priority(base: int, pids: list[int]) -> None:
    """Back from the spare's low priority (``task``: niced while it prepares, where it may be
    raised again) to ``base``, the Ray worker's: every thread of this process, and the zygote
    (its workers are forked with its priority)."""
    tids = []
    with contextlib.suppress(OSError):
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    for who in (*tids, *pids):
        with contextlib.suppress(OSError):
            if os.getpriority(os.PRIO_PROCESS, who) > base:
                os.setpriority(os.PRIO_PROCESS, who, base)


async def _ahead(node_dir: str, disable: frozenset[str], base_nice: int | None) -> int:
    """Prepare, and wait for the job on stdin meanwhile (EOF: no job, nothing left behind).
    A job that arrives before the preparation is done has it finished at full priority; one
    whose preparation failed is run as a fresh ``run-job`` runs it."""
    libc.set_name(SPARE_NAME)
    job_bytes = _stdin_job()
    preparing = asyncio.ensure_future(prepare(node_dir, disable, ahead=True))
    waiting: set[asyncio.Future[Any]] = {job_bytes, preparing}
    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    if job_bytes.done() and not job_bytes.result():  # dismissed: nothing to finish
        preparing.cancel()
        with contextlib.suppress(BaseException):
            await preparing
        return 0
    if job_bytes.done() and base_nice is not None:
        _full_priority(base_nice, [])
    prepared: Prepared | None = None
    try:
        prepared = await preparing
    except Exception:
        log.exception("run-job: preparing ahead failed; its job gets a sandbox of its own")
    try:
        raw = await job_bytes
    except BaseException:
        if prepared is not None:
            await _dispose(prepared)
        raise
    libc.set_name(NAME)
    if base_nice is not None:
        _full_priority(base_nice, prepared.sandbox.helper_pids() if prepared else [])
    job = _read_job(raw) if raw else None
    if job is None:
        if prepared is not None:
            await _dispose(prepared)
        return 2 if raw else 0
    return await NodeRun(job).run(prepared)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--ahead"] and len(args) in (2, 3, 4):
        disabled = frozenset(filter(None, args[2].split(","))) if len(args) >= 3 else frozenset()
        base_nice = int(args[3]) if len(args) == 4 else None  # niced from this, to go back to
        return asyncio.run(_ahead(args[1], disabled, base_nice))
    job = _read_job(sys.stdin.buffer.read(1 << 20))
    if job is None:
        return 2
    return asyncio.run(NodeRun(job).run())


if __name__ == "__main__":
    sys.exit(main())
