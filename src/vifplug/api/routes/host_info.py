"""``GET /v1/host-info``: the negotiation endpoint.

A peer (os-vif's consumer, the network manager) reads what this host can
plug, backlevelled to the HostInfo version or object manifest it
understands; building and backlevelling live in ``vifplug.negotiation``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from vifplug.api import errors
from vifplug.api.dependencies import RuntimeDep, ServiceDep
from vifplug.negotiation import hostinfo
from vifplug.records import JsonObject

router = APIRouter(tags=["negotiation"])


@router.get(
    "/v1/host-info",
    operation_id="getHostInfo",
    responses={
        **errors.REQUEST_ERRORS,
        **errors.SERVER_ERRORS,
        406: errors.documented(
            "that version cannot be produced; details carry max_version and min_version"
        ),
    },
)
async def host_info(
    service: ServiceDep,
    runtime: RuntimeDep,
    version: Annotated[
        str | None, Query(description="HostInfo version to backlevel to, e.g. 1.0")
    ] = None,
    manifest: Annotated[
        str | None,
        Query(
            description="oslo.versionedobjects version manifest of the peer, e.g. "
            "HostInfo:1.0,HostPluginInfo:1.0,HostVIFInfo:1.0"
        ),
    ] = None,
) -> JsonObject:
    """This host's HostInfo primitive (os_vif namespace)."""

    def work() -> JsonObject:
        return hostinfo.backlevel(service.host_info(), version=version, manifest=manifest)

    return await runtime.call(work)
