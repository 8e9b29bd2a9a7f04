"""``/v1/vifs``: plug, list, show, unplug and set the iface-status of VIFs.

Every service call here blocks (netlink, OVSDB commits, fsyncs, waiting for
an ofport), so each runs in the API pool through ``Runtime.call``; so does
rendering a VIF, which asks OVS for its ofport.  Plug and unplug latencies
are observed here, by plugin and result, because only the HTTP layer sees
a request from its arrival to its answer.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from vifplug import exceptions
from vifplug.api import errors, models
from vifplug.api.dependencies import RuntimeDep, ServiceDep, unique_keys
from vifplug.plugging.admission import TeamingRequest
from vifplug.plugging.service import PlugRequest, PlugResult, Service
from vifplug.records import JsonObject, LeftAlone, VifRecord

router = APIRouter(tags=["vifs"])

#: Longest ``timeout=`` a plug may ask for, in seconds.
MAX_PLUG_TIMEOUT = 3600.0

VifId = Annotated[str, Path(description="the VIF's id (os_vif VIFBase.id)")]

_NOT_FOUND: dict[int | str, JsonObject] = {404: errors.documented("unknown VIF id")}

#: The unplug answer's header naming what it left in place (see ``left_alone_header``).
LEFT_ALONE_HEADER = "Vifplug-Left-Alone"


def render(service: Service, record: VifRecord) -> models.Vif:
    """``record`` as the API shows it, with its ofport (blocking: asks OVS)."""
    return models.Vif.from_record(record, ofport=service.ofport(record))


def _plugin_label(service: Service, vif: JsonObject) -> str:
    """The plug metric's ``plugin`` label before the service chose one: the
    plugin the VIF names if it is installed, else ``unknown`` (a client must
    not be able to create label values)."""
    data = vif.get("versioned_object.data")
    named = data.get("plugin") if isinstance(data, dict) else None
    return named if isinstance(named, str) and named in service.plugin_names() else "unknown"


@router.post(
    "/v1/vifs",
    operation_id="plugVif",
    status_code=201,
    dependencies=[Depends(unique_keys)],
    responses={
        **errors.REQUEST_ERRORS,
        **errors.SERVER_ERRORS,
        **errors.OVSDB_ERRORS,
        200: {"model": models.Vif, "description": "the same request again: nothing changed"},
        409: errors.documented(
            "the VIF id is plugged with other content, or a transient teaming member's "
            "persistent member is not plugged here or already has a transient member"
        ),
        504: errors.documented(
            "the wait condition did not happen in time (plug_timeout; the VIF stays "
            "plugged and listed), or OVSDB did not answer (ovsdb_timeout)"
        ),
    },
)
async def plug(
    request: Request,
    response: Response,
    body: models.PlugBody,
    service: ServiceDep,
    runtime: RuntimeDep,
    wait: Annotated[models.WaitMode, Query(description="what the answer waits for")] = "ofport",
    timeout: Annotated[
        float | None,
        Query(
            ge=0,
            le=MAX_PLUG_TIMEOUT,
            allow_inf_nan=False,
            description="seconds to wait; default [api] default_timeout",
        ),
    ] = None,
) -> models.Vif:
    """Plug a VIF (idempotent): 201 the first time, 200 for the same request."""
    data = body.vif.get("versioned_object.data")
    if isinstance(data, dict) and isinstance(data.get("id"), str):
        request.state.vif_id = data["id"]  # for the access log
    req = PlugRequest(
        vif=body.vif,
        instance=body.instance,
        wait=wait,
        timeout=timeout,
        iface_status=body.iface_status,
        allow_dual_active=body.allow_dual_active,
        portgroup=body.portgroup,
        teaming=(
            TeamingRequest(type=body.teaming.type, persistent=body.teaming.persistent)
            if body.teaming is not None
            else None
        ),
    )
    started = time.monotonic()
    plugin = _plugin_label(service, body.vif)
    label = "error"

    plugged: list[PlugResult] = []  # the plug's outcome, even when rendering it then fails

    def work() -> models.Vif:
        # One trip to the pool and back, not one for the plug and one more
        # for its rendering: with 16 plugs answered by one ofport update,
        # every hand-off between threads is paid 16 times in a row.
        plugged.append(service.plug(req))
        return render(service, plugged[0].record)

    try:
        shown = await runtime.call(work)
    except exceptions.VifplugError as exc:
        label = exc.code
        raise
    finally:
        if plugged:  # the metric counts the plug, which happened, not its rendering
            plugin = plugged[0].record.plugin
            label = "created" if plugged[0].created else "unchanged"
        runtime.metrics.plug_seconds.labels(plugin=plugin, result=label).observe(
            time.monotonic() - started
        )
    response.status_code = 201 if plugged[0].created else 200
    return shown


@router.get("/v1/vifs", operation_id="listVifs", responses=errors.SERVER_ERRORS)
async def list_vifs(service: ServiceDep, runtime: RuntimeDep) -> models.VifList:
    """Every VIF this host knows, plugged or in flight."""

    def work() -> models.VifList:
        return models.VifList(vifs=[render(service, r) for r in service.list()])

    return await runtime.call(work)


@router.get(
    "/v1/vifs/{vif_id}",
    operation_id="showVif",
    responses={**errors.SERVER_ERRORS, **_NOT_FOUND},
)
async def show_vif(vif_id: VifId, service: ServiceDep, runtime: RuntimeDep) -> models.Vif:
    """One VIF."""

    def work() -> models.Vif:
        return render(service, service.get(vif_id))

    return await runtime.call(work)


def _sf_string(text: str) -> str:
    """``text`` as a structured-field String (RFC 8941), or a Display String
    (RFC 9651) when it is not printable ASCII: device names may be UTF-8."""
    if all(" " <= c <= "~" for c in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    quoted = "".join(
        chr(b) if 0x20 <= b <= 0x7E and b not in b'%"' else f"%{b:02x}"
        for b in text.encode("utf-8")
    )
    return f'%"{quoted}"'


def left_alone_header(left: tuple[LeftAlone, ...]) -> str:
    """What an unplug left in place, as a structured-field List (RFC 8941):
    ``"tapXYZ";kind=device;reason="not made by vifplug (...)"``, one member each."""
    return ", ".join(
        f"{_sf_string(item.name)};kind={item.kind};reason={_sf_string(item.reason)}"
        for item in left
    )


@router.delete(
    "/v1/vifs/{vif_id}",
    operation_id="unplugVif",
    status_code=204,
    responses={
        **errors.SERVER_ERRORS,
        **errors.OVSDB_ERRORS,
        **_NOT_FOUND,
        409: errors.documented(
            "the VIF is the persistent member of a failover pair whose transient member "
            "is still plugged (teaming_member_plugged): unplug that one first"
        ),
        204: {
            "description": "unplugged",
            "headers": {
                LEFT_ALONE_HEADER: {
                    "description": "present when a device or OVS port carrying a name "
                    "the VIF had was not made by vifplug and was left in place: a "
                    'structured-field list, e.g. `"tapXYZ";kind=device;reason="not made '
                    'by vifplug (link group 0, not 4242)"`',
                    "schema": {"type": "string"},
                }
            },
        },
    },
    response_class=Response,
)
async def unplug(vif_id: VifId, service: ServiceDep, runtime: RuntimeDep) -> Response:
    """Unplug: remove the OVS port and the host devices vifplug made; leave in
    place, and name in ``Vifplug-Left-Alone``, any that someone else made
    under the same names meanwhile."""
    started = time.monotonic()
    plugin = "unknown"
    label = "error"

    def work() -> tuple[LeftAlone, ...]:
        nonlocal plugin
        plugin = service.get(vif_id).plugin  # the label, before the record is gone
        return service.unplug(vif_id)

    try:
        left = await runtime.call(work)
        label = "removed"
    except exceptions.VifplugError as exc:
        label = exc.code
        raise
    finally:
        runtime.metrics.unplug_seconds.labels(plugin=plugin, result=label).observe(
            time.monotonic() - started
        )
    response = Response(status_code=204)
    if left:
        for item in left:
            runtime.metrics.unplug_left_alone.labels(kind=item.kind).inc()
        response.headers[LEFT_ALONE_HEADER] = left_alone_header(left)
    return response


@router.put(
    "/v1/vifs/{vif_id}/status",
    operation_id="setVifStatus",
    responses={
        **errors.REQUEST_ERRORS,
        **errors.SERVER_ERRORS,
        **errors.OVSDB_ERRORS,
        **_NOT_FOUND,
    },
    dependencies=[Depends(unique_keys)],
)
async def set_status(
    vif_id: VifId, body: models.StatusBody, service: ServiceDep, runtime: RuntimeDep
) -> models.Vif:
    """Set iface-status; activating makes the other interfaces with the same
    iface-id inactive in the same OVSDB transaction."""

    def work() -> models.Vif:
        record = service.set_status(
            vif_id, body.iface_status, allow_dual_active=body.allow_dual_active
        )
        return render(service, record)

    return await runtime.call(work)
