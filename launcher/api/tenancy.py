"""The tenant checks of the Model service, over ``launcher.auth.access.AccessCheck``.

What a createState or uploadState header names (dataset params, the persistent launcher,
mounted states and snapshots, a mounted model's active state) and the state a state call
names must belong to the caller's tenant; lists keep only the tenant's states, snapshots and
jobs. All blocking (database reads): call from a thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from launcher.auth.access import AccessCheck, Caller
from launcher.auth.owners import DATASET, LAUNCHER, SNAPSHOT, STATE


class ModelTenancy:
    def __init__(self, check: AccessCheck, active_state_id: Any) -> None:
        self.check = check
        #: ``active_state_id(model_id) -> str | None`` (the state store's).
        self._active = active_state_id

    def header(self, caller: Caller, header: Any) -> None:
        """``access_denied`` when a createState/uploadState header names another tenant's
        dataset, persistent launcher, state or snapshot (including a mounted model's active
        state, which a mount without ``stateId`` reads)."""
        if caller.admin:
            return
        for param in getattr(header, "params", ()):
            if param.WhichOneof("data") == "dataset":
                self.check.check(caller, DATASET, param.dataset.dataset_id)
        location = getattr(header, "execution_location", None)
        if location is not None and location.WhichOneof("location") == "persistent_launcher_id":
            self.check.check(caller, LAUNCHER, location.persistent_launcher_id)
        for mount in header.mount_models:
            self.mount(caller, mount)

    def mount(self, caller: Caller, mount: Any) -> None:
        if mount.HasField("snapshot_id"):
            self.check.check(caller, SNAPSHOT, mount.snapshot_id)
        elif mount.HasField("state_id"):
            self.check.check(caller, STATE, mount.state_id)
        else:
            self.active(caller, mount.model_id)

    def state(self, caller: Caller, state_id: str) -> None:
        self.check.check(caller, STATE, state_id)

    def active(self, caller: Caller, model_id: str) -> None:
        """The model's active state (what a call without a state id uses), if it has one."""
        if caller.admin:
            return
        active = self._active(model_id)
        if active is not None:
            self.check.check(caller, STATE, active)

    def states(self, caller: Caller, ids: Iterable[str]) -> set[str]:
        return set(self.check.visible(caller, STATE, ids))

    def snapshots(self, caller: Caller, ids: Iterable[str]) -> set[str]:
        return set(self.check.visible(caller, SNAPSHOT, ids))

    def own_state(self, caller: Caller, state_id: str) -> None:
        self.check.own(caller, STATE, state_id)

    def own_snapshot(self, caller: Caller, snapshot_id: str) -> None:
        self.check.own(caller, SNAPSHOT, snapshot_id)


def install(
    db: Any,
    servicers: dict[str, Any],
    jobs: Any,
    states: Any,
    phase_caps: Any = None,
) -> AccessCheck:
    """Give the servicers (``{"Model", "Dataset", "PersistentLauncher"}``) and the job
    manager the one access check and quota ledger of ``db``; returns the check (the HTTP
    front door and tests may call it too)."""
    from launcher.auth.quotas import QuotaLedger

    check = AccessCheck(db)
    quotas = QuotaLedger(db)
    model = servicers["Model"]
    model.tenancy = ModelTenancy(check, states.active_state_id)
    model.quotas = quotas
    model.phase_caps = phase_caps
    servicers["Dataset"].access_check = check
    servicers["Dataset"].quotas = quotas
    servicers["PersistentLauncher"].access_check = check
    jobs.owners = check.owners
    return check
