"""``/v1/leaks``: what reconciliation's leak guard kept, and the operator's purge.

When the state is lost (deleted, emptied, restored from elsewhere), the
ports and devices of running VMs carry this daemon's marks but no VIF of the
state accounts for them.  Reconciliation then keeps them (``docs/state.md``,
the leak guard) so that the compute service's re-plugs can adopt them.
What is left after that is removed only here, on the operator's explicit
word: ``GET`` lists what a purge would remove and removes nothing; ``POST
.../purge`` removes it only with ``{"confirm": true}``.

Both run in the API pool: listing reads the kernel, and a purge is a
reconciliation run, which holds plugs off while it runs.
"""

from __future__ import annotations

from fastapi import APIRouter

from vifplug import exceptions
from vifplug.api import errors, models
from vifplug.api.dependencies import Runtime, RuntimeDep
from vifplug.plugging import reconcile
from vifplug.records import JsonObject

router = APIRouter(tags=["leaks"])

_UNAVAILABLE: dict[int | str, JsonObject] = {
    **errors.SERVER_ERRORS,
    503: errors.documented("the daemon has not reconciled its state yet, or cannot serve now"),
}


def _reconciler(runtime: Runtime) -> reconcile.Reconciler:
    if runtime.reconciler is None:
        raise exceptions.NotReady(reason="the state is not reconciled yet")
    return runtime.reconciler


def _guard(reconciler: reconcile.Reconciler) -> models.LeakGuard:
    guard = reconciler.guard
    return models.LeakGuard(held=guard.held, reason=guard.reason, since=models.utc(guard.since))


@router.get("/v1/leaks", operation_id="listLeaks", responses=_UNAVAILABLE)
async def list_leaks(runtime: RuntimeDep) -> models.Leaks:
    """What a purge would remove now; removes nothing."""
    reconciler = _reconciler(runtime)

    def work() -> models.Leaks:
        leaks = reconciler.leaks()
        return models.Leaks(
            guard=_guard(reconciler),
            ports=[models.LeakedPort(name=n, vif_id=v) for n, v in leaks.ports.items()],
            devices=leaks.links,
        )

    return await runtime.call(work)


@router.post(
    "/v1/leaks/purge",
    operation_id="purgeLeaks",
    responses={**errors.REQUEST_ERRORS, **errors.OVSDB_ERRORS, **_UNAVAILABLE},
)
async def purge_leaks(
    runtime: RuntimeDep, body: models.PurgeBody | None = None
) -> models.PurgeResult:
    """Remove every port and device that carries our marks and no VIF accounts
    for, and release the leak guard; only with ``{"confirm": true}``."""
    reconciler = _reconciler(runtime)

    def work() -> models.PurgeResult:
        if body is None or not body.confirm:
            leaks = reconciler.leaks()
            raise exceptions.PurgeNotConfirmed(ports=len(leaks.ports), devices=len(leaks.links))
        report = reconciler.purge()
        return models.PurgeResult(
            removed_ports=report.leaked_ports,
            removed_devices=report.leaked_links,
            guard=_guard(reconciler),
        )

    return await runtime.call(work)
