"""Internal records of what vifplug did for a VIF: the libvirt "actual" state.

These plain dataclasses are shared by ``state`` (which persists them),
``plugins`` (which produce them) and the plug path (``Placement``, which it
hands the plugins), so they live below all of them.  They are not wire
objects: the API renders them, and the database stores them as JSON with a
schema version, so a newer daemon can read what an older one wrote.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
from collections.abc import Mapping
from typing import Any

#: A JSON object as received or stored (an os_vif primitive, a request body).
JsonObject = dict[str, Any]
#: libvirt's ``<virtualport>`` of a VIF: its type and the profile's parameters.
VirtualPort = dict[str, Any]


def canonical_json(value: Any) -> str:
    """Canonical JSON: the same value always gives the same text (and digest)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def request_object(text: str) -> JsonObject:
    """A stored request decoded; ``ValueError`` unless it is a JSON object."""
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("request is not a JSON object")
    return value


class Teaming(enum.StrEnum):
    """A member of a failover pair (libvirt's ``<teaming type=...>``)."""

    PERSISTENT = "persistent"  # the virtio interface that stays through a migration
    TRANSIENT = "transient"  # the hostdev preferred while present, released first


class Lifecycle(enum.StrEnum):
    """Where a VIF is in its life; written before and after each system change."""

    PLUGGING = "plugging"  # intent recorded, system may be partly changed
    PLUGGED = "plugged"  # acknowledged to the caller; must never be lost
    UNPLUGGING = "unplugging"  # intent to remove recorded; finish it on restart


@dataclasses.dataclass(frozen=True)
class Bandwidth:
    """Rates in kilobytes per second and bursts in kilobytes, as libvirt counts them."""

    inbound_average: int | None = None
    inbound_burst: int | None = None
    outbound_average: int | None = None
    outbound_burst: int | None = None

    def is_empty(self) -> bool:
        return all(v is None for v in dataclasses.astuple(self))


def needs_device_alone(mode: str | None, virtualport: Mapping[str, Any] | None) -> bool:
    """libvirt's rule for a pool device: passthrough, and private with an
    802.1Qbh profile, need a device to themselves; the other modes share it.
    The pool choice (``networks``) and the store's safety net both use it."""
    if mode == "passthrough":
        return True
    return (
        mode == "private"
        and bool(virtualport)
        and (virtualport or {}).get("type") in ("802.1Qbh", "VIFPortProfile8021Qbh")
    )


@dataclasses.dataclass(frozen=True)
class Allocation:
    """What a plug actually produced on this host.

    ``created_devices`` and ``created_port`` say what vifplug made (and so
    must remove on unplug); an adopted device or a port left to libvirt
    (``create_port=False``) is recorded but never deleted.
    """

    plugin: str
    device: str
    bridge: str | None = None
    port: str | None = None
    created_devices: tuple[str, ...] = ()
    created_port: bool = False
    network: str | None = None
    pool_device: str | None = None
    mode: str | None = None
    portgroup: str | None = None
    bandwidth: Bandwidth | None = None
    virtualport: VirtualPort | None = None
    # The bridge's IntegrationGuide keys, when it is a configured network's.
    bridge_id: str | None = None
    bridge_hwaddr: str | None = None
    # An SR-IOV VF given to the guest as <interface type='hostdev'> (the
    # ``hostdev`` plugin, dev_type ``ethernet``): its index on the PF (the PF
    # is ``pool_device``), the VLAN vifplug sets on it, and the MAC and VLAN
    # it had before, read when the intent was recorded and put back on unplug.
    vf_index: int | None = None
    vlan: int | None = None
    previous_mac: str | None = None
    previous_vlan: int | None = None

    def to_dict(self) -> JsonObject:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: JsonObject) -> Allocation:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["created_devices"] = tuple(values.get("created_devices", ()))
        bw = values.get("bandwidth")
        values["bandwidth"] = Bandwidth(**bw) if isinstance(bw, dict) else None
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class VifRecord:
    """One VIF as vifplug knows it: the request as received and its outcome."""

    vif_id: str
    plugin: str
    obj_name: str
    obj_version: str
    instance_uuid: str
    instance_name: str
    #: The request as received (``{"vif": primitive, "instance": primitive}``,
    #: and ``teaming`` when given) in canonical JSON (``canonical_json``), as
    #: stored: text takes a quarter of the memory of the decoded objects (1.5
    #: against 6.5 KB a VIF), and no write re-encodes it.  ``request`` decodes it.
    request_json: str
    #: sha256 of the request's canonical content (``PlugRequest.digest``: the
    #: objects and the options that change what is plugged), for idempotency.
    request_digest: str
    lifecycle: Lifecycle
    iface_id: str | None = None
    iface_status: str | None = None
    mac: str | None = None
    allocation: Allocation | None = None
    #: ``persistent`` or ``transient`` for a member of a failover pair.  The
    #: peer is the other member's VIF id: always set on a transient member,
    #: and on its persistent member while the transient one is recorded (the
    #: store changes both rows in one transaction).
    teaming_type: Teaming | None = None
    teaming_peer: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0

    def with_changes(self, **changes: Any) -> VifRecord:
        return dataclasses.replace(self, **changes)

    @property
    def request(self) -> JsonObject:
        """The request, decoded again at each use (a repair, not a plug)."""
        return request_object(self.request_json)


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a VIF goes, as the logical networks decide it.

    ``vifplug.plugging.placement`` is the only reader of the network
    definitions; it resolves this before the plugin plans, so that plugins
    read their targets from it and hold no networks of their own.
    """

    network: str | None = None  # the configured network the VIF names
    bridge: str | None = None  # the OVS bridge (OVS plugins), allowed and valid
    bridge_id: str | None = None
    bridge_hwaddr: str | None = None
    mode: str | None = None  # a direct network's forward mode


@dataclasses.dataclass(frozen=True)
class LeftAlone:
    """Something an unplug found under a name vifplug had recorded, but did not
    make, and so left in place: a device outside this daemon's link group, or
    an OVS port without this VIF's ``vifplug-`` marks.  The unplug still
    succeeds (the VIF's own things are gone); the caller is told what stayed."""

    kind: str  # "device" or "port"
    name: str
    reason: str  # one phrase: "not made by vifplug (link group 0, not 1234)"


def rfc3339(timestamp: float | None) -> str | None:
    """A Unix time as the API shows times: RFC 3339 in UTC with ``Z``, as
    pydantic writes an aware datetime; 0 or None (not recorded) is None."""
    if not timestamp:
        return None
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    return moment.isoformat().replace("+00:00", "Z")
