"""``/healthz``, ``/readyz``, ``/metrics`` and ``/v1/reload``: what a supervisor
and a scraper ask.

None of these goes through the API pool: a pool saturated by plugs waiting
for their ports must not make the daemon look dead to its supervisor, nor
stop a scrape that would show why.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response

from vifplug import exceptions
from vifplug.api import errors, models
from vifplug.api import metrics as metrics_mod
from vifplug.api.dependencies import RuntimeDep

router = APIRouter(tags=["operations"])


@router.get("/healthz", operation_id="getHealth")
async def healthz() -> models.Health:
    """Liveness: the event loop answers."""
    return models.Health(status="ok")


@router.get(
    "/readyz",
    operation_id="getReadiness",
    response_model=models.Readiness,
    responses={503: errors.documented("not ready; details say why")},
)
async def readyz(runtime: RuntimeDep) -> models.Readiness | Response:
    """Readiness: OVSDB connected and the state reconciled."""
    # Inline (cheap attribute reads): a pool saturated by plugs waiting for
    # their ports must not make the daemon look dead to its supervisor.
    ready, details = runtime.readiness()
    if not ready:
        exc = exceptions.NotReady(reason=details.get("reason", "starting"))
        return errors.error_response(exc.code, exc.message, details)
    return models.Readiness(status="ready", details=details)


@router.get(
    "/metrics",
    operation_id="getMetrics",
    response_class=Response,
    responses={
        200: {
            "content": {metrics_mod.CONTENT_TYPE: {}},
            "description": "Prometheus text format",
        }
    },
)
async def metrics(runtime: RuntimeDep) -> Response:
    """Prometheus metrics."""
    # Not in the API pool: a scrape must work when plugs saturate it.
    body = await asyncio.to_thread(runtime.metrics.render)
    return Response(body, media_type=metrics_mod.CONTENT_TYPE)


@router.post(
    "/v1/reload",
    operation_id="reloadConfiguration",
    responses={
        **errors.SERVER_ERRORS,
        400: errors.documented("the configuration cannot be applied; the running one is kept"),
        503: errors.documented("not running yet, or stopping"),
    },
)
async def reload(runtime: RuntimeDep) -> models.Reloaded:
    """Re-read the network definitions, as SIGHUP does, and answer when the
    reload is done (``systemctl reload`` runs this through ``vifplug reload``,
    so it returns once the new definitions are in force)."""
    if runtime.reload is None:
        raise exceptions.ReloadUnavailable(reason="it has not started")
    outcome = await runtime.reload()
    return models.Reloaded(status="reloaded", networks=outcome.networks, kept=outcome.kept)
