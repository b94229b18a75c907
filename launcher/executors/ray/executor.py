"""``RayExecutor``: each worker on a node of a Ray cluster, its protocol relayed to this hub.

The runner, the store and the API are unchanged: ``start`` places a Ray task that holds
the spec's resources on a node, which runs ``launcher run-job`` there (same sandbox, same
worker) and dials this hub's relay; the data channel becomes the worker's session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray

from launcher import outcomes as oc
from launcher.executors.base import PhaseFailed, SpecRefused, Worker, terminated
from launcher.executors.ray import bundle, control, sampling
from launcher.executors.ray.jobspec import NodeJob
from launcher.executors.ray.process import KILL_GRACE, RelayedProcess
from launcher.executors.ray.relay import RelayListener, RelayTls, Ticket
from launcher.executors.ray.resources import check_feasible, ray_options
from launcher.executors.ray.task import launcher_actor, node_task
from launcher.executors.teardown import Teardowns
from launcher.observe import sysinfo
from launcher.observe.sysinfo import Sample
from launcher.spec import LauncherSpec
from launcher.worker.session import WorkerSession

if TYPE_CHECKING:
    from launcher.store.models import ModelConfig

log = logging.getLogger("launcher.executors.ray")

#: How long placement (Ray scheduling, bundle transfer, node sandbox) may take before the
#: node's hello, on top of the model's code-startup limit.
PLACEMENT_LIMIT = 120.0
#: How much longer than the model's code-startup limit the hub waits for the data channel.
CONNECT_SLACK = 30.0
#: How often the cluster's node table is read (feasibility checks, dead nodes).
NODES_POLL = 1.0
#: How long a persistent launcher's actor may take to answer for its samples.
SAMPLES_LIMIT = 5.0


class RayExecutor:
    def __init__(
        self,
        address: str,
        relay: RelayListener,
        relay_address: str,
        node_dir: Path,
        log_dir: Path,
        sandbox_disable: frozenset[str] = frozenset(),
        relay_ca: str | None = None,
    ) -> None:
        self.address = address
        self.relay_ca = relay_ca
        self.relay = relay
        self.relay_address = relay_address
        self.node_dir = node_dir
        self.sandbox_disable = sandbox_disable
        self._nodes: list[dict[str, Any]] = []
        self._bundles: dict[tuple[str, str], tuple[str, Any]] = {}  # digest, object ref
        self._versions: dict[str, str] = {}  # model id -> code version of its bundle
        self._running: dict[int, RelayedProcess] = {}
        self._layers: dict[str, str] = {}
        self._teardowns = Teardowns(log_dir, self._after_teardown)
        self._poller: asyncio.Task[None] | None = None
        self._actors: dict[str, Any] = {}  # persistent launcher id -> its actor
        self._specs: dict[str, LauncherSpec] = {}  # persistent launcher id -> its spec
        self._sampled_on: dict[str, str] = {}  # persistent launcher id -> its actor's node
        #: state of each start: model id, node id (for logs and tests).
        self.placements: list[tuple[str, str]] = []

    @classmethod
    async def connect(
        cls,
        address: str,
        relay_listen: str,
        node_dir: Path,
        log_dir: Path,
        sandbox_disable: frozenset[str] = frozenset(),
        tls: RelayTls | None = None,
    ) -> RayExecutor:
        host, _, port = relay_listen.rpartition(":")
        relay = RelayListener(host.strip("[]"), int(port), tls.context if tls else None)
        await relay.start()
        await asyncio.to_thread(
            ray.init, address=address, log_to_driver=False, logging_level=logging.WARNING
        )
        executor = cls(
            address,
            relay,
            relay.address,
            node_dir,
            log_dir,
            sandbox_disable,
            tls.trust_pem if tls else None,
        )
        await executor._refresh_nodes()
        executor._poller = asyncio.create_task(executor._poll_nodes())
        log.info(
            "executor ray: cluster %s, %d alive nodes, relay on %s",
            address,
            sum(1 for n in executor._nodes if n.get("Alive")),
            relay.address,
        )
        return executor

    # Cluster state -------------------------------------------------------------------------

    async def _refresh_nodes(self) -> None:
        self._nodes = await asyncio.to_thread(ray.nodes)

    async def _poll_nodes(self) -> None:
        while True:
            await asyncio.sleep(NODES_POLL)
            try:
                await self._refresh_nodes()
            except Exception:  # a hiccup of the GCS: keep the last table
                log.exception("reading Ray's node table failed")
                continue
            dead = {n["NodeID"] for n in self._nodes if not n.get("Alive")}
            for process in list(self._running.values()):
                if process.hello.node_id in dead:
                    process.lost("its node is dead in Ray's node table")

    def check_spec(self, spec: LauncherSpec) -> None:
        check_feasible(spec, self._nodes)

    def layers(self) -> dict[str, str]:
        return dict(self._layers) or {"executor": "ray: no node has reported its layers yet"}

    def limits(self) -> dict[str, str]:
        alive = [n for n in self._nodes if n.get("Alive")]
        return {"executor": f"ray ({self.address})", "nodes": str(len(alive))}

    # Workers -------------------------------------------------------------------------------

    async def _bundle(self, model: ModelConfig) -> tuple[str, Any]:
        key = ("model", model.model_id)
        if self._versions.get(model.model_id) != model.code_version:  # only the latest is kept
            digest, raw = await asyncio.to_thread(bundle.make_bundle, model.path)
            self._bundles[key] = (digest, await asyncio.to_thread(ray.put, raw))
            self._versions[model.model_id] = model.code_version
        return self._bundles[key]

    async def _folder_bundle(self, folder: Path) -> tuple[str, Any]:
        """A mounted model's folder (its files may change between jobs: hashed each time)."""
        digest, raw = await asyncio.to_thread(bundle.make_bundle, folder)
        key = ("folder", str(folder))
        if self._bundles.get(key, ("", None))[0] != digest:  # only the latest is kept
            self._bundles[key] = (digest, await asyncio.to_thread(ray.put, raw))
        return self._bundles[key]

    async def start(
        self,
        model: ModelConfig,
        spec: LauncherSpec,
        mounts: list[str],
        connect_limit: float,
        group: str | None = None,
    ) -> Worker:
        digest, ref = await self._bundle(model)
        mounted = [await self._folder_bundle(Path(m)) for m in mounts]
        ticket = self.relay.issue(PLACEMENT_LIMIT + connect_limit)
        job = NodeJob(
            relay=self.relay_address,
            token=ticket.token,
            node_dir=str(self.node_dir),
            runtime=model.runtime,
            fresh_process=model.fresh_process,
            spec=spec,
            connect_limit=connect_limit,
            digest=digest,
            sandbox_disable=sorted(self.sandbox_disable),
            relay_ca=self.relay_ca,
            group=group,
            mounts=[{"path": m, "digest": d} for m, (d, _) in zip(mounts, mounted, strict=True)],
        )
        refs = [ref, *(r for _, r in mounted)]
        if group is None:
            task_ref = node_task.options(**ray_options(spec)).remote(job.to_json(), refs)
        else:
            actor = self._actor(group, spec)
            task_ref = actor.run.remote(job.to_json(), refs)
        ref_done = asyncio.wrap_future(task_ref.future())
        if group is not None:  # a failed call means a dead actor (its node): the next job
            # of the launcher makes a new one
            ref_done.add_done_callback(lambda f: self._call_done(f, group, actor))

        def cancel() -> None:
            with contextlib.suppress(Exception):
                if group is None:
                    ray.cancel(task_ref, force=True)
                else:  # an actor's call cannot be cancelled by force: the actor goes
                    self._drop_actor(group, actor)

        try:
            return await self._connect(model, spec, mounts, ticket, ref_done, cancel, connect_limit)
        except BaseException:
            self.relay.revoke(ticket)
            if group is None:
                cancel()
            else:  # the node side ends by itself (told to, or refused by the relay); an
                # actor's other workers must not go with it unless it does not
                def cancel_if_running() -> None:
                    if not ref_done.done():
                        cancel()

                asyncio.get_running_loop().call_later(KILL_GRACE, cancel_if_running)
            raise

    async def _first(
        self,
        fut: asyncio.Future[Any],
        ref_done: asyncio.Future[Any],
        limit: float,
        spec: LauncherSpec,
    ) -> Any:
        """``fut``'s result, unless the Ray task ends first, the spec no longer fits any node
        (a node went away while the task waited for it) or ``limit`` passes: then the
        launcher could not be made, ``launcher_terminated``."""
        deadline = time.monotonic() + limit
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("no node took the job within %.0f s", limit)
                raise PhaseFailed(oc.LauncherTerminated())
            done, _ = await asyncio.wait(
                {fut, ref_done}, timeout=min(left, NODES_POLL), return_when=asyncio.FIRST_COMPLETED
            )
            if fut in done:
                return fut.result()
            if ref_done in done:
                error = ref_done.exception() if not ref_done.cancelled() else "cancelled"
                log.warning("the node task ended before its worker connected: %s", error)
                raise PhaseFailed(oc.LauncherTerminated())
            try:
                check_feasible(spec, self._nodes)
            except SpecRefused as e:
                log.warning("a waiting job fits no node any more: %s", e.reason)
                raise PhaseFailed(oc.LauncherTerminated()) from None

    async def _connect(
        self,
        model: ModelConfig,
        spec: LauncherSpec,
        mounts: list[str],
        ticket: Ticket,
        ref_done: asyncio.Future[Any],
        cancel: Any,
        connect_limit: float,
    ) -> Worker:
        started = time.monotonic()
        ctl_r, ctl_w = await self._first(
            ticket.channels["control"], ref_done, PLACEMENT_LIMIT, spec
        )
        line = await self._first(
            asyncio.ensure_future(control.read_line(ctl_r)), ref_done, PLACEMENT_LIMIT, spec
        )
        hello = control.decode(line) if line else None
        if not isinstance(hello, control.Hello):
            ctl_w.close()
            raise PhaseFailed(oc.LauncherTerminated())
        self._layers = hello.layers
        process = RelayedProcess(hello, ctl_r, ctl_w, ref_done, cancel)
        self._running[id(process)] = process
        try:
            data = asyncio.ensure_future(ticket.channels["data"])
            ended = asyncio.ensure_future(process.wait())
            # The node applies ``connect_limit`` itself (and says so); this is the backstop.
            waiters: set[asyncio.Future[Any]] = {data, ended}
            done, _ = await asyncio.wait(
                waiters,
                timeout=connect_limit + CONNECT_SLACK,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if data not in done:
                ended.cancel()
                if ended in done:
                    raise PhaseFailed(terminated(ended.result()))
                raise PhaseFailed(oc.MaxDurationExceeded(oc.Phase.CODE_STARTUP))
            ended.cancel()
        except BaseException:
            self._running.pop(id(process), None)
            process.kill()
            raise
        reader, writer = data.result()
        process.attach_data(writer)
        self.placements.append((model.model_id, hello.node_id))
        log.info(
            "model %s: worker placed on node %s in %.2f s",
            model.model_id,
            hello.node_id[:12],
            time.monotonic() - started,
        )
        relative = model.main_py.relative_to(model.path)
        return Worker(
            process,
            WorkerSession(reader, writer),
            None,
            model.model_id,
            model.code_version,
            tuple(mounts),
            main_py=Path(hello.model_dir) / relative,
            paths=dict(hello.mounts),
        )

    def release(self, worker: Worker, log_name: str) -> None:
        self._teardowns.release(worker, log_name)

    async def stop(self, worker: Worker, log_name: str) -> None:
        await self._teardowns.stop(worker, log_name)

    async def _after_teardown(self, worker: Worker) -> None:
        self._running.pop(id(worker.process), None)

    def _actor(self, group: str, spec: LauncherSpec) -> Any:
        """The persistent launcher's actor (made again if it went: its node died)."""
        self._specs[group] = spec
        actor = self._actors.get(group)
        if actor is None:
            actor = launcher_actor.options(**ray_options(spec)).remote(
                group,
                sysinfo.INTERVAL,
                sysinfo.WINDOW,
                str(self.node_dir),
                "cgroup" not in self.sandbox_disable,
            )
            self._actors[group] = actor
            log.info("persistent launcher %s: a Ray actor holds its spec", group)
        return actor

    def _call_done(self, fut: asyncio.Future[Any], group: str, actor: Any) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            self._drop_actor(group, actor)

    def _drop_actor(self, group: str, actor: Any) -> None:
        if self._actors.get(group) is actor:
            del self._actors[group]
        with contextlib.suppress(Exception):
            ray.kill(actor, no_restart=True)

    def open_group(self, group: str, spec: LauncherSpec) -> None:
        """A persistent launcher holds its spec on one node for its life, as a Ray actor."""
        self._actor(group, spec)

    async def launcher_samples(self, group: str, since: float | None) -> list[Sample]:
        """The persistent launcher's usage, sampled by its actor on its node from the actor's
        creation; none while the actor waits for a node or after it went (its node died:
        the next job or call makes a new one)."""
        actor = self._actors.get(group)
        if actor is None and group in self._specs:
            actor = self._actor(group, self._specs[group])
        if actor is None:
            return []
        try:
            async with asyncio.timeout(SAMPLES_LIMIT):
                answer = await asyncio.wrap_future(actor.samples.remote(since).future())
            samples = sampling.to_samples(answer["samples"])
        except TimeoutError:
            return []
        except Exception as e:  # a dead actor (its node): made again on the next call
            log.warning("persistent launcher %s: its actor gave no samples: %r", group, e)
            self._drop_actor(group, actor)
            return []
        if self._sampled_on.get(group) != answer["nodeId"]:
            self._sampled_on[group] = answer["nodeId"]
            log.info(
                "persistent launcher %s: sampled on node %s (%s)",
                group,
                str(answer["nodeId"])[:12],
                answer["source"],
            )
        return samples

    def close_group(self, group: str) -> None:
        self._specs.pop(group, None)
        self._sampled_on.pop(group, None)
        actor = self._actors.get(group)
        if actor is not None:
            self._drop_actor(group, actor)

    async def close(self) -> None:
        await self._teardowns.wait()
        for group, actor in list(self._actors.items()):
            self._drop_actor(group, actor)
        if self._poller is not None:
            self._poller.cancel()
        await self.relay.close()
        await asyncio.to_thread(ray.shutdown)
