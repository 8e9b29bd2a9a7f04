"""Realistic, fully populated sample objects, and tools to compare registries.

Shared by the interop tests (which run vifplug's objects) and by
``osvif_helper.py`` (which runs os-vif's in a subprocess).  It must import
neither vifplug nor os-vif: oslo.versionedobjects has one registry per process,
so each side passes in its own classes, by object name.

A sample is a JSON-able spec: ``{"$obj": "Name", field: value, ...}``, values
being plain JSON or further specs.  ``build`` turns a spec into an object of
whichever registry it is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NAMESPACE = "os_vif"
KEY_NAME = "versioned_object.name"
KEY_NAMESPACE = "versioned_object.namespace"
KEY_VERSION = "versioned_object.version"
KEY_DATA = "versioned_object.data"
KEY_CHANGES = "versioned_object.changes"


def _o(obj_name: str, /, **fields: Any) -> dict[str, Any]:
    return {"$obj": obj_name, **fields}


# --- network ------------------------------------------------------------------

FIXED_IP = _o("FixedIP", address="10.20.0.15", floating_ips=["203.0.113.44", "203.0.113.45"])
FIXED_IP6 = _o("FixedIP", address="2001:db8:20::f00d", floating_ips=[])
ROUTE = _o("Route", cidr="192.168.128.0/17", gateway="10.20.0.254", interface="eth0")
ROUTE6 = _o("Route", cidr="2001:db8:ff::/48", gateway="2001:db8:20::1", interface="eth0")
SUBNET4 = _o(
    "Subnet",
    cidr="10.20.0.0/24",
    dns=["10.20.0.2", "192.0.2.53"],
    gateway="10.20.0.1",
    ips=_o("FixedIPList", objects=[FIXED_IP]),
    routes=_o("RouteList", objects=[ROUTE]),
    dhcp_server="10.20.0.2",
)
SUBNET6 = _o(
    "Subnet",
    cidr="2001:db8:20::/64",
    dns=["2001:db8:20::2"],
    gateway="2001:db8:20::1",
    ips=_o("FixedIPList", objects=[FIXED_IP6]),
    routes=_o("RouteList", objects=[ROUTE6]),
    dhcp_server="2001:db8:20::2",
)
NETWORK = _o(
    "Network",
    id="6f0ab3a5-8e5c-4a38-9a3e-1b8a2c4d5e6f",
    bridge="br-int",
    label="tenant-blue",
    subnets=_o("SubnetList", objects=[SUBNET4, SUBNET6]),
    multi_host=False,
    should_provide_bridge=True,
    should_provide_vlan=True,
    bridge_interface="eth1",
    vlan=120,
    mtu=1450,
)
NETWORK_MINIMAL = _o(
    "Network",
    id="0c3f1a8e-2b44-4d6a-9f1e-3b5c7d9e1f20",
    bridge="br-int",
    label="provider",
    subnets=_o("SubnetList", objects=[]),
    multi_host=True,
    should_provide_bridge=False,
    should_provide_vlan=False,
    bridge_interface=None,
    vlan=None,
    mtu=None,
)

# --- port profiles and offloads ---------------------------------------------------

REPRESENTOR = _o(
    "DatapathOffloadRepresentor",
    representor_name="enp129s0f0_3",
    representor_address="0000:81:00.5",
)
PROFILE_OVS = _o(
    "VIFPortProfileOpenVSwitch",
    interface_id="3c1e2b1a-4f5d-4e6c-8a7b-9c0d1e2f3a4b",
    profile_id="",
    datapath_type="system",
    create_port=True,
    create_tap=True,
    multiqueue=True,
    datapath_offload=REPRESENTOR,
)
PROFILE_OVS_NULLS = _o(
    "VIFPortProfileOpenVSwitch",
    interface_id="7d2e4f6a-8b0c-4d1e-9f2a-3b4c5d6e7f80",
    profile_id="ovs-profile",
    datapath_type=None,
    create_port=False,
    create_tap=False,
    multiqueue=False,
    datapath_offload=None,
)
PROFILE_FP_OVS = _o(
    "VIFPortProfileFPOpenVSwitch",
    interface_id="a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
    profile_id="fp",
    datapath_type="netdev",
    create_port=False,
    create_tap=True,
    multiqueue=False,
    datapath_offload=None,
    bridge_name="br-fp",
    hybrid_plug=True,
)
PROFILE_OVS_REPRESENTOR = _o(
    "VIFPortProfileOVSRepresentor",
    interface_id="b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e",
    profile_id="",
    datapath_type="system",
    create_port=True,
    create_tap=False,
    multiqueue=False,
    datapath_offload=REPRESENTOR,
    representor_name="enp129s0f0_4",
    representor_address="0000:81:00.6",
)
PROFILE_FP_BRIDGE = _o(
    "VIFPortProfileFPBridge",
    bridge_name="fpbr-5b9a",
    datapath_offload=_o("DatapathOffloadBase"),
)
PROFILE_FP_TAP = _o("VIFPortProfileFPTap", mac_address="fa:16:3e:00:aa:01", datapath_offload=None)
PROFILE_QBG = _o(
    "VIFPortProfile8021Qbg",
    manager_id=12,
    type_id=3,
    type_id_version=1,
    instance_id="c3d4e5f6-a7b8-4c9d-0e1f-2a3b4c5d6e7f",
    datapath_offload=None,
)
PROFILE_QBH = _o("VIFPortProfile8021Qbh", profile_id="gold-vnic", datapath_offload=REPRESENTOR)
PROFILE_K8S = _o(
    "VIFPortProfileK8sDPDK",
    l3_setup=True,
    selflink="/api/v1/namespaces/default/pods/dpdk-0",
    resourceversion="184467",
    datapath_offload=None,
)
PROFILE_BASE = _o("VIFPortProfileBase", datapath_offload=REPRESENTOR)

# --- VIFs -------------------------------------------------------------------------


def _vif(name: str, vif_id: str, profile: dict[str, Any], **fields: Any) -> dict[str, Any]:
    common: dict[str, Any] = {
        "id": vif_id,
        "address": "fa:16:3e:5c:1d:2e",
        "network": NETWORK,
        "plugin": "ovs",
        "active": False,
        "preserve_on_delete": True,
        "has_traffic_filtering": True,
        "port_profile": profile,
    }
    common.update(fields)
    return _o(name, **common)


VIF_OVS = _vif(
    "VIFOpenVSwitch",
    "3c1e2b1a-4f5d-4e6c-8a7b-9c0d1e2f3a4b",
    PROFILE_OVS,
    vif_name="tap3c1e2b1a-4f",
    bridge_name="br-int",
)
VIF_OVS_NULLS = _vif(
    "VIFOpenVSwitch",
    "7d2e4f6a-8b0c-4d1e-9f2a-3b4c5d6e7f80",
    PROFILE_OVS_NULLS,
    address=None,
    network=None,
    active=True,
    preserve_on_delete=False,
    has_traffic_filtering=False,
    vif_name="tap7d2e4f6a-8b",
    bridge_name="br-int",
)
VIF_OVS_REPRESENTOR = _vif(
    "VIFOpenVSwitch",
    "b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e",
    PROFILE_OVS_REPRESENTOR,
    network=NETWORK_MINIMAL,
    vif_name="enp129s0f0_4",
    bridge_name="br-int",
)

SAMPLES: dict[str, list[dict[str, Any]]] = {
    "FixedIP": [FIXED_IP, FIXED_IP6],
    "FixedIPList": [
        _o("FixedIPList", objects=[FIXED_IP, FIXED_IP6]),
        _o("FixedIPList", objects=[]),
    ],
    "Route": [ROUTE],
    "RouteList": [_o("RouteList", objects=[ROUTE, ROUTE6])],
    "Subnet": [SUBNET4, SUBNET6],
    "SubnetList": [_o("SubnetList", objects=[SUBNET4, SUBNET6])],
    "Network": [NETWORK, NETWORK_MINIMAL],
    "InstanceInfo": [
        _o(
            "InstanceInfo",
            uuid="9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d",
            name="instance-0000002a",
            project_id="4f1e2d3c4b5a69788796a5b4c3d2e1f0",
        )
    ],
    "DatapathOffloadBase": [_o("DatapathOffloadBase")],
    "DatapathOffloadRepresentor": [
        REPRESENTOR,
        _o("DatapathOffloadRepresentor", representor_name=None, representor_address=None),
    ],
    "VIFPortProfileBase": [PROFILE_BASE],
    "VIFPortProfileOpenVSwitch": [PROFILE_OVS, PROFILE_OVS_NULLS],
    "VIFPortProfileFPOpenVSwitch": [PROFILE_FP_OVS],
    "VIFPortProfileOVSRepresentor": [PROFILE_OVS_REPRESENTOR],
    "VIFPortProfileFPBridge": [PROFILE_FP_BRIDGE],
    "VIFPortProfileFPTap": [PROFILE_FP_TAP],
    "VIFPortProfile8021Qbg": [PROFILE_QBG],
    "VIFPortProfile8021Qbh": [PROFILE_QBH],
    "VIFPortProfileK8sDPDK": [PROFILE_K8S],
    "VIFBase": [_vif("VIFBase", "d4e5f6a7-b8c9-4d0e-1f2a-3b4c5d6e7f8a", PROFILE_BASE)],
    "VIFOpenVSwitch": [VIF_OVS, VIF_OVS_NULLS, VIF_OVS_REPRESENTOR],
    "VIFGeneric": [
        _vif(
            "VIFGeneric",
            "e5f6a7b8-c9d0-4e1f-2a3b-4c5d6e7f8a9b",
            PROFILE_FP_TAP,
            plugin="noop",
            vif_name="tape5f6a7b8-c9",
        )
    ],
    "VIFBridge": [
        _vif(
            "VIFBridge",
            "f6a7b8c9-d0e1-4f2a-3b4c-5d6e7f8a9b0c",
            PROFILE_FP_BRIDGE,
            plugin="linux_bridge",
            vif_name="tapf6a7b8c9-d0",
            bridge_name="brq6f0ab3a5-8e",
        )
    ],
    "VIFDirect": [
        _vif(
            "VIFDirect",
            "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
            PROFILE_QBH,
            plugin="direct",
            vif_name="macvtap0a1b2c3d",
            dev_address="0000:81:00.3",
            mode="passthrough",
            vlan_name="eth2.120",
        )
    ],
    "VIFVHostUser": [
        _vif(
            "VIFVHostUser",
            "1b2c3d4e-5f6a-4b7c-9d8e-0f1a2b3c4d5e",
            PROFILE_FP_OVS,
            vif_name="vhu1b2c3d4e-5f",
            path="/var/run/openvswitch/vhu1b2c3d4e-5f",
            mode="server",
        )
    ],
    "VIFHostDevice": [
        _vif(
            "VIFHostDevice",
            "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f",
            PROFILE_QBG,
            plugin="sriov",
            dev_type="ethernet",
            dev_address="0000:81:10.2",
        )
    ],
    "VIFNestedDPDK": [
        _vif(
            "VIFNestedDPDK",
            "3d4e5f6a-7b8c-4d9e-0f1a-2b3c4d5e6f7a",
            PROFILE_K8S,
            plugin="noop",
            pci_address="0000:00:05.0",
            dev_driver="virtio-pci",
        )
    ],
}

# --- host info --------------------------------------------------------------------

PP_OVS = _o(
    "HostPortProfileInfo",
    profile_object_name="VIFPortProfileOpenVSwitch",
    min_version="1.0",
    max_version="1.4",
)
PP_FP_OVS = _o(
    "HostPortProfileInfo",
    profile_object_name="VIFPortProfileFPOpenVSwitch",
    min_version="1.1",
    max_version="1.4",
)
HVI_OVS = _o(
    "HostVIFInfo",
    vif_object_name="VIFOpenVSwitch",
    min_version="1.0",
    max_version="1.0",
    supported_port_profiles=[PP_OVS],
)
HVI_VHU = _o(
    "HostVIFInfo",
    vif_object_name="VIFVHostUser",
    min_version="1.0",
    max_version="1.1",
    supported_port_profiles=[PP_OVS, PP_FP_OVS],
)
HVI_BRIDGE = _o(
    "HostVIFInfo",
    vif_object_name="VIFBridge",
    min_version="1.0",
    max_version="1.0",
    supported_port_profiles=[],
)
HPI_OVS = _o("HostPluginInfo", plugin_name="ovs", vif_info=[HVI_OVS, HVI_VHU])
HPI_LB = _o("HostPluginInfo", plugin_name="linux_bridge", vif_info=[HVI_BRIDGE])
HOST_INFO = _o("HostInfo", plugin_info=[HPI_LB, HPI_OVS])

SAMPLES.update(
    {
        "HostPortProfileInfo": [PP_OVS],
        "HostVIFInfo": [HVI_OVS, HVI_VHU, HVI_BRIDGE],
        "HostPluginInfo": [HPI_OVS],
        "HostInfo": [HOST_INFO, _o("HostInfo", plugin_info=[])],
    }
)


# --- tools ---------------------------------------------------------------------------


def build(spec: Any, classes: Mapping[str, Any]) -> Any:
    """An object of ``classes`` (name -> class) from a spec."""
    if isinstance(spec, dict) and "$obj" in spec:
        cls = classes[spec["$obj"]]
        kwargs = {k: build(v, classes) for k, v in spec.items() if k != "$obj"}
        return cls(**kwargs)
    if isinstance(spec, list):
        return [build(v, classes) for v in spec]
    return spec


def versions(latest: str) -> list[str]:
    """Every version an object has had: ``1.0`` to ``latest`` (oslo's convention:
    minor versions in steps of one within a major)."""
    major, minor = (int(p) for p in latest.split("."))
    return [f"{major}.{m}" for m in range(minor + 1)]


def canonical(primitive: Any) -> Any:
    """A primitive with ``versioned_object.changes`` sorted (oslo builds it from a set)."""
    if isinstance(primitive, dict):
        out = {k: canonical(v) for k, v in primitive.items()}
        if "versioned_object.changes" in out:
            out["versioned_object.changes"] = sorted(primitive["versioned_object.changes"])
        return out
    if isinstance(primitive, list):
        return [canonical(v) for v in primitive]
    return primitive


def _describe_value(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_describe_value(v) for v in value]
    if isinstance(value, type):
        return f"class {value.__name__}"
    if hasattr(value, "__dict__"):
        return {
            "class": type(value).__name__,
            **{k: _describe_value(v) for k, v in sorted(vars(value).items()) if k != "AUTO_TYPE"},
        }
    return repr(value)


def describe(classes: Mapping[str, Any]) -> dict[str, Any]:
    """Everything about each class that the wire depends on, more than oslo's
    fingerprint covers: it also has each object field's target object name and
    whether subclasses are allowed, the field classes' names, and which other
    os_vif classes each class descends from (``subclasses=True`` fields accept
    exactly those)."""
    out: dict[str, Any] = {}
    for name, cls in sorted(classes.items()):
        out[name] = {
            "version": cls.VERSION,
            "namespace": cls.OBJ_PROJECT_NAMESPACE,
            "fields": {f: _describe_value(field) for f, field in sorted(cls.fields.items())},
            "ancestors": sorted(
                c.__name__
                for c in cls.__mro__[1:]
                if c.__name__ in classes and classes[c.__name__] is c
            ),
            "comparable": any(c.__name__ == "ComparableVersionedObject" for c in cls.__mro__),
        }
    return out


# Fields os-vif's constructors set even when the primitive's version does not
# have them, and which os-vif then re-serialises (vifplug drops them, see
# VersionedObject.obj_to_primitive).  (object, version) -> fields.
OSVIF_CONSTRUCTOR_EXTRAS: dict[tuple[Any, Any], set[str]] = {("Network", "1.0"): {"mtu"}}


def field_differences(ours: Any, theirs: Any, path: str = "") -> list[str]:
    """Where a peer's re-serialisation of our primitive differs from it, field
    by field, recursively (empty when every field came through unchanged)."""
    if isinstance(ours, dict) and isinstance(theirs, dict) and KEY_DATA in ours:
        ident = (ours.get(KEY_NAME), ours.get(KEY_VERSION))
        here = f"{path}/{ident[0]}"
        found = [
            f"{here}: {key} {ours.get(key)!r} != {theirs.get(key)!r}"
            for key in (KEY_NAME, KEY_NAMESPACE, KEY_VERSION)
            if ours.get(key) != theirs.get(key)
        ]
        data, their_data = ours[KEY_DATA], theirs.get(KEY_DATA, {})
        # oslo leaves the names of fields dropped by backlevelling in a nested
        # object's changes; a loader ignores names its version does not have.
        our_changes = sorted(set(ours.get(KEY_CHANGES, [])) & set(data))
        their_changes = sorted(set(theirs.get(KEY_CHANGES, [])) & set(their_data))
        if our_changes != their_changes:
            found.append(f"{here}: changes {our_changes} != {their_changes}")
        allowed = OSVIF_CONSTRUCTOR_EXTRAS.get(ident, set())
        for field in sorted(set(data) | set(their_data)):
            if field not in data:
                if field not in allowed:
                    found.append(f"{here}.{field}: only os-vif has it")
            elif field not in their_data:
                found.append(f"{here}.{field}: os-vif lost it")
            else:
                found += field_differences(data[field], their_data[field], f"{here}.{field}")
        return found
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        return [
            d
            for i, (a, b) in enumerate(zip(ours, theirs, strict=True))
            for d in field_differences(a, b, f"{path}[{i}]")
        ]
    return [] if ours == theirs else [f"{path}: {ours!r} != {theirs!r}"]
