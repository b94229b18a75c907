"""The executor ``launcher serve`` runs its workers with: local (the default) or Ray."""

from __future__ import annotations

import logging
from pathlib import Path

from launcher.config import ServeOptions
from launcher.executors.base import Executor
from launcher.executors.local import LocalExecutor
from launcher.sandbox import SandboxConfig, create_sandbox
from launcher.sandbox.gpus import GpuInventory, parse_fake_inventory

log = logging.getLogger("launcher")


async def make_executor(options: ServeOptions, root: Path, run_dir: Path) -> Executor:
    log_dir = root / "logs" / "jobs"
    if options.executor == "ray":
        try:
            from launcher.executors.ray import RayExecutor
            from launcher.executors.ray.relay import RelayTls
        except ImportError as e:
            raise SystemExit(
                f"--executor ray needs Ray: pip install 'launcher[ray]' ({e})"
            ) from None
        if not options.ray_address:
            raise SystemExit("--executor ray needs --ray-address HOST:PORT")
        tls = None
        if options.relay_tls_cert is not None and options.relay_tls_key is not None:
            tls = RelayTls.load(options.relay_tls_cert, options.relay_tls_key, options.relay_tls_ca)
        return await RayExecutor.connect(
            options.ray_address,
            options.relay_listen,
            options.ray_node_dir,
            log_dir,
            frozenset(options.sandbox_disable),
            tls,
        )
    sandbox = await create_sandbox(
        SandboxConfig(
            state_dir=run_dir / "sandbox",
            disable=frozenset(options.sandbox_disable),
            hide=(root,),
            bindable_dirs=(root / "models", root / "snapshots"),
        )
    )
    gpus = GpuInventory(parse_fake_inventory(options.fake_gpus) if options.fake_gpus else None)
    if gpus.gpus:
        log.info("GPUs: %s", ", ".join(f"{g.id}: {g.model}" for g in gpus.gpus))
    await sandbox.warm_up()
    return LocalExecutor(sandbox, run_dir, log_dir, gpus)
