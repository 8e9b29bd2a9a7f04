"""``GET /v1/networks``: the configured networks as this host applies them.

Read-only: networks are defined in the configuration files and re-read on
SIGHUP, not through the API.  The view reads the state store for the pool
devices' holders, so it runs in the API pool like every other service call.
"""

from __future__ import annotations

from fastapi import APIRouter

from vifplug.api import errors, models
from vifplug.api.dependencies import RuntimeDep, ServiceDep

router = APIRouter(tags=["networks"])


@router.get("/v1/networks", operation_id="listNetworks", responses=errors.SERVER_ERRORS)
async def networks(service: ServiceDep, runtime: RuntimeDep) -> models.NetworkList:
    """The configured networks, their device pools and which VIF holds which."""

    def work() -> models.NetworkList:
        return models.NetworkList(networks=service.networks_view())

    return await runtime.call(work)
