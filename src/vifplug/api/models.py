"""Request and response envelopes of API v1, as pydantic models.

The os-vif objects themselves (``vif``, ``instance``, HostInfo) travel as
oslo.versionedobjects primitives and are checked by ``negotiation``, not
here: pydantic only checks the envelope around them (which keys, which JSON
types), so that a misspelt key or a string where a boolean belongs is refused
before the service sees the request.  Unknown keys are refused
(``extra="forbid"``): a client that believes it set an option must not be
silently ignored.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, WithJsonSchema

from vifplug.objects import base as obj_base
from vifplug.objects import instance_info, vif
from vifplug.records import JsonObject, VifRecord

IfaceStatus = Literal["active", "inactive"]
WaitMode = Literal["ofport", "none", "ovn-installed"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- errors ------------------------------------------------------------------------


class ErrorBody(BaseModel):
    code: str = Field(description="snake_case identifier of the failure; stable")
    message: str = Field(description="one sentence a person understands")
    details: JsonObject = Field(description="the failure's context (ids, names, ranges)")


class ErrorEnvelope(BaseModel):
    error: ErrorBody


# --- requests ----------------------------------------------------------------------


class TeamingBody(_Strict):
    """libvirt's ``<teaming>``: a member of a failover pair (QEMU's virtio failover)."""

    type: Literal["persistent", "transient"] = Field(
        description="persistent: the virtio VIF that carries the traffic while the "
        "transient one is away; transient: the VIFHostDevice preferred while present"
    )
    persistent: str | None = Field(
        default=None,
        max_length=255,
        description="transient members only: the VIF id of the persistent member, "
        "which must be plugged on this host with the same MAC",
    )


def _primitive_schema(kind: type[obj_base.VersionedObject]) -> JsonObject:
    """The JSON schema of an os_vif primitive of ``kind`` as admission checks
    it (``objects.loading.primitive_identity``): the four keys required, the
    namespace, a known name of that kind, a version X.Y.  Only the document
    uses it: admission still checks, with one sentence on what is wrong."""
    names = sorted(
        name
        for name, cls in obj_base.classes().items()
        if issubclass(cls, kind) and (cls is not vif.VIFBase)
    )
    return {
        "type": "object",
        "required": [
            obj_base.KEY_NAME,
            obj_base.KEY_NAMESPACE,
            obj_base.KEY_VERSION,
            obj_base.KEY_DATA,
        ],
        "properties": {
            obj_base.KEY_NAME: {"type": "string", "enum": names},
            obj_base.KEY_NAMESPACE: {"type": "string", "enum": [obj_base.NAMESPACE]},
            obj_base.KEY_VERSION: {
                "type": "string",
                "pattern": f"^{obj_base.VERSION_PATTERN}$",
            },
            obj_base.KEY_DATA: {"type": "object"},
            obj_base.KEY_CHANGES: {"type": "array", "items": {"type": "string"}},
        },
    }


VifPrimitive = Annotated[JsonObject, WithJsonSchema(_primitive_schema(vif.VIFBase))]
InstancePrimitive = Annotated[
    JsonObject, WithJsonSchema(_primitive_schema(instance_info.InstanceInfo))
]


class PlugBody(_Strict):
    """The body of ``POST /v1/vifs``."""

    vif: VifPrimitive = Field(
        description="an os_vif VIF primitive (VIFOpenVSwitch, VIFBridge, VIFDirect, "
        "VIFHostDevice, VIFVHostUser) as os-vif's obj_to_primitive() makes it"
    )
    instance: InstancePrimitive = Field(description="an os_vif InstanceInfo primitive")
    iface_status: IfaceStatus = Field(
        default="active",
        description="iface-status to give the interface; activating it makes the other "
        "interfaces with the same iface-id inactive",
    )
    allow_dual_active: StrictBool = Field(
        default=False,
        description="leave other interfaces with the same iface-id active (a migration "
        "from this host to itself; must be asked for explicitly)",
    )
    portgroup: str | None = Field(
        default=None,
        max_length=64,
        description="portgroup of the VIF's configured network to apply (libvirt's "
        "<source portgroup=...>); default: the network's default portgroup",
    )
    teaming: TeamingBody | None = Field(
        default=None, description="the VIF's role in a failover pair (libvirt's <teaming>)"
    )


class StatusBody(_Strict):
    """The body of ``PUT /v1/vifs/{vif_id}/status``."""

    iface_status: IfaceStatus
    allow_dual_active: StrictBool = Field(
        default=False, description="see PlugBody.allow_dual_active"
    )


# --- responses ---------------------------------------------------------------------


def utc(timestamp: float | None) -> datetime.datetime | None:
    """A stored Unix time as the API shows it: an aware UTC datetime, which
    pydantic writes as RFC 3339 (``2025-01-02T03:04:05.123456Z``); the state
    keeps its floats.  0 (or None) is "not recorded"."""
    if not timestamp:
        return None
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)


class InstanceRef(BaseModel):
    uuid: str
    name: str


class VifObjectRef(BaseModel):
    name: str = Field(description="os_vif object name, e.g. VIFOpenVSwitch")
    version: str = Field(description="the object version the request carried")


class Vif(BaseModel):
    """A plugged VIF as this host knows it (the libvirt "actual" state)."""

    vif_id: str
    instance: InstanceRef
    plugin: str
    vif_object: VifObjectRef
    lifecycle: str = Field(description="plugging, plugged or unplugging")
    device: str | None = Field(description="the host device (tap, macvtap, vhost-user name)")
    bridge: str | None = Field(description="the OVS bridge, if any")
    port: str | None = Field(description="the OVS port or linux bridge the device is on")
    ofport: int | None = Field(description="the OpenFlow port number, once OVS assigned one")
    iface_id: str | None
    iface_status: str | None
    mac: str | None
    network: str | None = Field(description="the configured network the VIF is in, if any")
    pool_device: str | None = Field(
        description="the physical device actually allocated (pool networks) or the parent"
    )
    mode: str | None = Field(description="forward mode of a direct VIF")
    portgroup: str | None
    teaming_type: str | None = Field(
        description="persistent or transient for a member of a failover pair"
    )
    teaming_peer: str | None = Field(
        description="the other member's VIF id: on a transient member its persistent "
        "member, on a persistent member its transient member while one is plugged"
    )
    created_at: datetime.datetime | None = Field(
        description="when the VIF was first plugged (RFC 3339, UTC); null if not recorded"
    )
    updated_at: datetime.datetime | None = Field(
        description="when its record last changed (RFC 3339, UTC); null if not recorded"
    )

    @classmethod
    def from_record(cls, record: VifRecord, *, ofport: int | None) -> Vif:
        alloc = record.allocation
        return cls(
            vif_id=record.vif_id,
            instance=InstanceRef(uuid=record.instance_uuid, name=record.instance_name),
            plugin=record.plugin,
            vif_object=VifObjectRef(name=record.obj_name, version=record.obj_version),
            lifecycle=str(getattr(record.lifecycle, "value", record.lifecycle)),
            device=alloc.device if alloc else None,
            bridge=alloc.bridge if alloc else None,
            port=alloc.port if alloc else None,
            ofport=ofport,
            iface_id=record.iface_id,
            iface_status=record.iface_status,
            mac=record.mac,
            network=alloc.network if alloc else None,
            pool_device=alloc.pool_device if alloc else None,
            mode=alloc.mode if alloc else None,
            portgroup=alloc.portgroup if alloc else None,
            teaming_type=record.teaming_type.value if record.teaming_type else None,
            teaming_peer=record.teaming_peer,
            created_at=utc(record.created_at),
            updated_at=utc(record.updated_at),
        )


class VifList(BaseModel):
    vifs: list[Vif]


class NetworkList(BaseModel):
    networks: list[JsonObject] = Field(
        description="configured networks, their device pools and which VIF holds which device"
    )


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready"]
    details: JsonObject


class Reloaded(BaseModel):
    """What a reload applied."""

    status: Literal["reloaded"]
    networks: list[str] = Field(description="the networks now configured")
    kept: list[str] = Field(
        description="networks removed from the configuration but kept, since they still have VIFs"
    )


# --- leaks -------------------------------------------------------------------------


class LeakGuard(BaseModel):
    """Whether reconciliation keeps leaks instead of removing them, and why."""

    held: bool = Field(description="true: no reconciliation removes anything until a purge")
    reason: str | None = Field(description="why the guard holds")
    since: datetime.datetime | None = Field(description="when it started to hold (RFC 3339, UTC)")


class LeakedPort(BaseModel):
    name: str = Field(description="the OVS port and interface name")
    vif_id: str = Field(description="the interface's vifplug-vif-id")


class Leaks(BaseModel):
    """What carries this daemon's marks and no VIF of the state accounts for."""

    guard: LeakGuard
    ports: list[LeakedPort] = Field(description="OVS ports carrying our vifplug-owner")
    devices: list[str] = Field(description="devices in our kernel link group")


class PurgeBody(_Strict):
    """The body of ``POST /v1/leaks/purge``."""

    confirm: StrictBool = Field(
        default=False,
        description="must be true: the ports and devices removed may still serve running VMs",
    )


class PurgeResult(BaseModel):
    removed_ports: list[str]
    removed_devices: list[str]
    guard: LeakGuard
