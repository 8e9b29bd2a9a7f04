"""os_vif primitives written by hand, as os-vif's ``obj_to_primitive()`` makes them.

Hand-written (not built with os-vif, nor with vifplug's objects) so the API
tests are black-box and can also build every kind of wrong primitive.  The
interop tests build the same objects with the real os-vif package, in a
subprocess.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

NS = "os_vif"


def obj(name: str, version: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "versioned_object.name": name,
        "versioned_object.namespace": NS,
        "versioned_object.version": version,
        "versioned_object.data": data,
        "versioned_object.changes": sorted(data),
    }


def instance(*, instance_uuid: str | None = None, name: str = "vm-test") -> dict[str, Any]:
    return obj(
        "InstanceInfo",
        "1.0",
        {"uuid": instance_uuid or str(uuid.uuid4()), "name": name, "project_id": "project-test"},
    )


def network(bridge: str, *, mtu: int | None = 1500, label: str = "net-test") -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "bridge": bridge,
        "label": label,
        "subnets": obj("SubnetList", "1.0", {"objects": []}),
        "multi_host": False,
        "should_provide_bridge": False,
        "should_provide_vlan": False,
    }
    if mtu is not None:
        data["mtu"] = mtu
    return obj("Network", "1.1", data)


def ovs_profile(
    interface_id: str, *, version: str = "1.4", datapath_type: str | None = "netdev"
) -> dict[str, Any]:
    data: dict[str, Any] = {"interface_id": interface_id, "profile_id": ""}
    if datapath_type is not None:
        data["datapath_type"] = datapath_type
    return obj("VIFPortProfileOpenVSwitch", version, data)


def vif_ovs(
    *,
    bridge: str,
    vif_id: str | None = None,
    mac: str | None = None,
    vif_name: str | None = None,
    iface_id: str | None = None,
    version: str = "1.0",
    plugin: str = "ovs",
) -> dict[str, Any]:
    """A VIFOpenVSwitch on ``bridge`` (through its Network), with a tap name
    derived from the id unless given."""
    vif_id = vif_id or str(uuid.uuid4())
    data: dict[str, Any] = {
        "id": vif_id,
        "address": mac or "fa:16:3e:%02x:%02x:%02x" % tuple(uuid.uuid4().bytes[:3]),
        "network": network(bridge),
        "plugin": plugin,
        "vif_name": vif_name or ("tap" + vif_id)[:14],
        "bridge_name": bridge,
        "active": False,
        "preserve_on_delete": False,
        "has_traffic_filtering": False,
        "port_profile": ovs_profile(iface_id or vif_id),
    }
    return obj("VIFOpenVSwitch", version, data)


def vif_vhostuser(*, vif_id: str | None = None, path: str = "/var/run/vhu.sock") -> dict[str, Any]:
    vif_id = vif_id or str(uuid.uuid4())
    return obj(
        "VIFVHostUser",
        "1.1",
        {
            "id": vif_id,
            "address": "fa:16:3e:11:22:33",
            "plugin": "noop",
            "vif_name": ("vhu" + vif_id)[:14],
            "path": path,
            "mode": "client",
            "active": False,
            "preserve_on_delete": False,
            "has_traffic_filtering": False,
        },
    )


def vif_hostdev(
    *,
    dev_address: str,
    mac: str,
    vif_id: str | None = None,
    dev_type: str = "generic",
    plugin: str = "hostdev",
) -> dict[str, Any]:
    """A VIFHostDevice (os-vif 1.0): the PCI function ``dev_address`` given to the guest."""
    return obj(
        "VIFHostDevice",
        "1.0",
        {
            "id": vif_id or str(uuid.uuid4()),
            "address": mac,
            "plugin": plugin,
            "dev_type": dev_type,
            "dev_address": dev_address,
            "active": False,
            "preserve_on_delete": False,
            "has_traffic_filtering": False,
        },
    )


def body(vif: dict[str, Any], inst: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"vif": vif, "instance": inst or instance()}
    out.update(extra)
    return out


def data(primitive: dict[str, Any]) -> dict[str, Any]:
    d: dict[str, Any] = primitive["versioned_object.data"]
    return d


def mutate(primitive: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy with ``versioned_object.data`` fields changed (None removes)."""
    out = copy.deepcopy(primitive)
    for key, value in changes.items():
        if value is None:
            out["versioned_object.data"].pop(key, None)
        else:
            out["versioned_object.data"][key] = value
    return out
