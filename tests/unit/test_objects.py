"""The wire objects on their own: versions, backlevelling, helpers.

Compatibility with the real os-vif package is proven in tests/interop; these
tests pin what vifplug promises (the consumer contract: object names, fields
per version) and the behaviour vifplug adds or fixes.
"""

from __future__ import annotations

import ast
import pathlib
from typing import Any

import pytest
from oslo_versionedobjects import exception as ovo_exception

import vifplug.objects
from vifplug import exceptions
from vifplug.objects import base, host_info, instance_info, network, vif

DATA = base.KEY_DATA

# The consumer contract: every object, and the fields it has at each of its
# versions.  A change here is a decision about what vifplug accepts.
_VIF_BASE = [
    "active",
    "address",
    "has_traffic_filtering",
    "id",
    "network",
    "plugin",
    "port_profile",
    "preserve_on_delete",
]
_OVS_PROFILE = {
    "1.0": ["interface_id", "profile_id"],
    "1.1": ["datapath_type", "interface_id", "profile_id"],
    "1.2": ["datapath_offload", "datapath_type", "interface_id", "profile_id"],
    "1.3": ["create_port", "datapath_offload", "datapath_type", "interface_id", "profile_id"],
    "1.4": [
        "create_port",
        "create_tap",
        "datapath_offload",
        "datapath_type",
        "interface_id",
        "multiqueue",
        "profile_id",
    ],
}


def _plus(fields: dict[str, list[str]], extra: list[str]) -> dict[str, list[str]]:
    return {v: sorted(f + extra) for v, f in fields.items()}


CONTRACT: dict[str, dict[str, list[str]]] = {
    "DatapathOffloadBase": {"1.0": []},
    "DatapathOffloadRepresentor": {"1.0": ["representor_address", "representor_name"]},
    "FixedIP": {"1.0": ["address", "floating_ips"]},
    "FixedIPList": {"1.0": ["objects"]},
    "Route": {"1.0": ["cidr", "gateway", "interface"]},
    "RouteList": {"1.0": ["objects"]},
    "Subnet": {"1.0": ["cidr", "dhcp_server", "dns", "gateway", "ips", "routes"]},
    "SubnetList": {"1.0": ["objects"]},
    "Network": {
        "1.0": [
            "bridge",
            "bridge_interface",
            "id",
            "label",
            "multi_host",
            "should_provide_bridge",
            "should_provide_vlan",
            "subnets",
            "vlan",
        ],
        "1.1": [
            "bridge",
            "bridge_interface",
            "id",
            "label",
            "mtu",
            "multi_host",
            "should_provide_bridge",
            "should_provide_vlan",
            "subnets",
            "vlan",
        ],
    },
    "InstanceInfo": {"1.0": ["name", "project_id", "uuid"]},
    "HostInfo": {"1.0": ["plugin_info"]},
    "HostPluginInfo": {"1.0": ["plugin_name", "vif_info"]},
    "HostVIFInfo": {
        "1.0": ["max_version", "min_version", "vif_object_name"],
        "1.1": ["max_version", "min_version", "supported_port_profiles", "vif_object_name"],
    },
    "HostPortProfileInfo": {"1.0": ["max_version", "min_version", "profile_object_name"]},
    "VIFPortProfileBase": {"1.0": [], "1.1": ["datapath_offload"]},
    "VIFPortProfileOpenVSwitch": _OVS_PROFILE,
    "VIFPortProfileFPOpenVSwitch": _plus(_OVS_PROFILE, ["bridge_name", "hybrid_plug"]),
    "VIFPortProfileOVSRepresentor": _plus(
        _OVS_PROFILE, ["representor_address", "representor_name"]
    ),
    "VIFPortProfileFPBridge": {"1.0": ["bridge_name"], "1.1": ["bridge_name", "datapath_offload"]},
    "VIFPortProfileFPTap": {"1.0": ["mac_address"], "1.1": ["datapath_offload", "mac_address"]},
    "VIFPortProfile8021Qbg": _plus(
        {"1.0": [], "1.1": ["datapath_offload"]},
        ["instance_id", "manager_id", "type_id", "type_id_version"],
    ),
    "VIFPortProfile8021Qbh": {"1.0": ["profile_id"], "1.1": ["datapath_offload", "profile_id"]},
    "VIFPortProfileK8sDPDK": _plus(
        {"1.0": [], "1.1": ["datapath_offload"]}, ["l3_setup", "resourceversion", "selflink"]
    ),
    "VIFBase": {"1.0": _VIF_BASE},
    "VIFGeneric": {"1.0": sorted([*_VIF_BASE, "vif_name"])},
    "VIFBridge": {"1.0": sorted([*_VIF_BASE, "bridge_name", "vif_name"])},
    "VIFOpenVSwitch": {"1.0": sorted([*_VIF_BASE, "bridge_name", "vif_name"])},
    "VIFDirect": {"1.0": sorted([*_VIF_BASE, "dev_address", "mode", "vif_name", "vlan_name"])},
    "VIFVHostUser": {
        "1.0": sorted([*_VIF_BASE, "mode", "path"]),
        "1.1": sorted([*_VIF_BASE, "mode", "path", "vif_name"]),
    },
    "VIFHostDevice": {"1.0": sorted([*_VIF_BASE, "dev_address", "dev_type"])},
    "VIFNestedDPDK": {"1.0": sorted([*_VIF_BASE, "dev_driver", "pci_address"])},
}

NET_ID = "6f0ab3a5-8e5c-4a38-9a3e-1b8a2c4d5e6f"
PORT_ID = "3c1e2b1a-4f5d-4e6c-8a7b-9c0d1e2f3a4b"


def _fields_at(cls: type[base.VersionedObject], version: str) -> list[str]:
    target = base.version_tuple(version)
    return sorted(
        f for f in cls.fields if base.version_tuple(cls.fields_added_in.get(f, "1.0")) <= target
    )


def _network(**kwargs: Any) -> network.Network:
    subnet = network.Subnet(
        cidr="10.20.0.0/24",
        dns=["10.20.0.2"],
        gateway="10.20.0.1",
        ips=network.FixedIPList(
            objects=[network.FixedIP(address="10.20.0.15", floating_ips=["203.0.113.44"])]
        ),
        routes=network.RouteList(
            objects=[network.Route(cidr="192.168.0.0/16", gateway="10.20.0.254", interface="")]
        ),
        dhcp_server="10.20.0.2",
    )
    values: dict[str, Any] = {
        "id": NET_ID,
        "bridge": "br-int",
        "label": "blue",
        "subnets": network.SubnetList(objects=[subnet]),
        "bridge_interface": None,
        "vlan": 120,
        "mtu": 1450,
    }
    values.update(kwargs)
    return network.Network(**values)


def _ovs_profile(**kwargs: Any) -> vif.VIFPortProfileOpenVSwitch:
    values: dict[str, Any] = {
        "interface_id": PORT_ID,
        "profile_id": "",
        "datapath_type": "system",
        "create_port": True,
        "create_tap": True,
        "multiqueue": True,
        "datapath_offload": vif.DatapathOffloadRepresentor(
            representor_name="eth3_1", representor_address="0000:81:00.1"
        ),
    }
    values.update(kwargs)
    return vif.VIFPortProfileOpenVSwitch(**values)


def _data(obj: base.VersionedObject, version: str, **kwargs: Any) -> dict[str, Any]:
    data: dict[str, Any] = obj.obj_to_primitive(target_version=version, **kwargs)[DATA]
    return data


# --- the contract -------------------------------------------------------------------------


def test_every_object_is_in_the_os_vif_namespace() -> None:
    for name, cls in base.classes().items():
        assert cls.OBJ_PROJECT_NAMESPACE == "os_vif", name
        assert cls.obj_name() == name


def test_objects_and_their_fields_per_version_are_the_pinned_contract() -> None:
    actual = {
        name: {v: _fields_at(cls, v) for v in _versions(cls.VERSION)}
        for name, cls in base.classes().items()
    }
    assert actual == CONTRACT


def _versions(latest: str) -> list[str]:
    major, minor = base.version_tuple(latest)
    return [f"{major}.{m}" for m in range(minor + 1)]


def test_fields_added_in_names_existing_fields_and_versions() -> None:
    for name, cls in base.classes().items():
        for field, since in cls.fields_added_in.items():
            assert field in cls.fields, (name, field)
            assert (1, 1) <= base.version_tuple(since) <= base.version_tuple(cls.VERSION)


def test_register_all_is_idempotent_and_needs_no_other_import() -> None:
    before = base.classes()
    vifplug.objects.register_all()
    assert base.classes() == before
    assert len(before) == 31


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_every_object_backlevels_to_every_version_it_has(name: str) -> None:
    """Fully populated objects backlevel without a manifest and keep exactly
    that version's fields (os-vif 5.3.0 raises for Network, VIFVHostUser and
    HostVIFInfo 1.0)."""
    cls = base.classes()[name]
    obj = _populated(cls)
    for version in _versions(cls.VERSION):
        primitive = obj.obj_to_primitive(target_version=version)
        assert primitive[base.KEY_VERSION] == version
        assert sorted(primitive[DATA]) == CONTRACT[name][version]
        assert set(primitive.get(base.KEY_CHANGES, [])) <= set(primitive[DATA])


def _populated(cls: type[base.VersionedObject]) -> base.VersionedObject:
    """An object of ``cls`` with every field set (values valid for the type)."""
    values: dict[str, Any] = {}
    for field_name, field in cls.fields.items():
        values[field_name] = _value_for(cls, field_name, field)
    return cls(**values)


def _value_for(cls: type[base.VersionedObject], name: str, field: Any) -> Any:
    kind = type(field).__name__
    simple = {
        "UUIDField": PORT_ID,
        "StringField": f"{name}-value",
        "BooleanField": True,
        "IntegerField": 7,
        "MACAddressField": "fa:16:3e:00:00:01",
        "PCIAddressField": "0000:81:00.1",
        "IPAddressField": "10.0.0.1",
        "IPNetworkField": "10.0.0.0/24",
        "ListOfIPAddressField": ["10.0.0.2"],
        "VIFDirectModeField": "vepa",
        "VIFVHostUserModeField": "client",
        "VIFHostDeviceDevTypeField": "generic",
    }
    if kind in simple:
        return simple[kind]
    if kind == "ObjectField":
        target = base.classes()[field.objname]
        if target is vif.VIFPortProfileBase:
            return _ovs_profile()
        if target is vif.DatapathOffloadBase:
            return vif.DatapathOffloadRepresentor(representor_name="r", representor_address="a")
        return _populated(target)
    if kind == "ListOfObjectsField":
        return [_populated(base.classes()[field.objname])]
    raise AssertionError(f"no sample value for {cls.obj_name()}.{name} ({kind})")


# --- backlevelling each version step -------------------------------------------------


def test_host_vif_info_1_0_drops_supported_port_profiles() -> None:
    info = host_info.HostVIFInfo(
        vif_object_name="VIFOpenVSwitch",
        min_version="1.0",
        max_version="1.0",
        supported_port_profiles=[
            host_info.HostPortProfileInfo(
                profile_object_name="VIFPortProfileOpenVSwitch",
                min_version="1.0",
                max_version="1.4",
            )
        ],
    )
    primitive = info.obj_to_primitive(target_version="1.0")
    assert primitive[DATA] == {
        "vif_object_name": "VIFOpenVSwitch",
        "min_version": "1.0",
        "max_version": "1.0",
    }
    assert "supported_port_profiles" not in primitive[base.KEY_CHANGES]
    assert "supported_port_profiles" in _data(info, "1.1")


@pytest.mark.parametrize(
    ("version", "gone"),
    [
        ("1.4", set()),
        ("1.3", {"create_tap", "multiqueue"}),
        ("1.2", {"create_tap", "multiqueue", "create_port"}),
        ("1.1", {"create_tap", "multiqueue", "create_port", "datapath_offload"}),
        ("1.0", {"create_tap", "multiqueue", "create_port", "datapath_offload", "datapath_type"}),
    ],
)
def test_ovs_port_profile_drops_what_each_older_version_lacks(version: str, gone: set[str]) -> None:
    profile = _ovs_profile()
    everything = set(_data(profile, "1.4"))
    assert set(_data(profile, version)) == everything - gone


@pytest.mark.parametrize("cls", [vif.VIFPortProfileFPOpenVSwitch, vif.VIFPortProfileOVSRepresentor])
def test_ovs_profile_subclasses_backlevel_in_lockstep(cls: type[vif.VIFPortProfileBase]) -> None:
    obj = _populated(cls)
    own = set(cls.fields) - set(vif.VIFPortProfileOpenVSwitch.fields)
    at_1_1 = set(_data(obj, "1.1"))
    assert own <= at_1_1  # their own fields exist since their 1.0
    assert "datapath_offload" not in at_1_1  # came with OpenVSwitch 1.2 = theirs 1.2
    assert "datapath_offload" in _data(obj, "1.2")
    assert set(_data(obj, "1.0")) == own | {"interface_id", "profile_id"}


@pytest.mark.parametrize(
    "cls",
    [
        vif.VIFPortProfileFPBridge,
        vif.VIFPortProfileFPTap,
        vif.VIFPortProfile8021Qbg,
        vif.VIFPortProfile8021Qbh,
        vif.VIFPortProfileK8sDPDK,
    ],
)
def test_other_port_profiles_lose_datapath_offload_at_1_0(
    cls: type[vif.VIFPortProfileBase],
) -> None:
    obj = _populated(cls)
    assert "datapath_offload" in _data(obj, "1.1")
    assert set(_data(obj, "1.0")) == set(cls.fields) - {"datapath_offload"}


def test_vhostuser_1_0_drops_vif_name_and_keeps_sub_objects_at_their_versions() -> None:
    vhu = vif.VIFVHostUser(
        id=PORT_ID,
        plugin="ovs",
        network=_network(),
        port_profile=_ovs_profile(),
        vif_name="vhu3c1e2b1a-4f",
        path="/run/vhu3c1e2b1a-4f",
        mode="server",
    )
    data = _data(vhu, "1.0")
    assert "vif_name" not in data
    assert data["network"][base.KEY_VERSION] == "1.1"
    assert data["network"][DATA]["mtu"] == 1450
    assert data["port_profile"][base.KEY_VERSION] == "1.4"


def test_network_1_0_drops_mtu_and_keeps_subnets() -> None:
    data = _data(_network(), "1.0")
    assert "mtu" not in data
    assert data["subnets"][DATA]["objects"][0][DATA]["cidr"] == "10.20.0.0/24"


def test_an_object_loaded_at_an_older_version_reserialises_at_that_version() -> None:
    """Network's constructor sets mtu even when loading a 1.0 primitive; it
    must not travel in the 1.0 primitive it is written back as."""
    old = _network().obj_to_primitive(target_version="1.0")
    loaded = base.from_primitive(old)
    assert loaded.VERSION == "1.0"
    assert loaded.obj_attr_is_set("mtu")  # the constructor did set it, as os-vif's does
    again = loaded.obj_to_primitive()
    assert "mtu" not in again[DATA]
    assert again[DATA] == old[DATA]
    assert sorted(again[base.KEY_CHANGES]) == sorted(old[base.KEY_CHANGES])


def test_a_version_newer_than_ours_cannot_be_produced() -> None:
    with pytest.raises(ovo_exception.InvalidTargetVersion):
        _network().obj_to_primitive(target_version="1.2")


def test_manifest_naming_host_port_profile_info_does_not_crash_host_vif_info_1_0() -> None:
    # os-vif 5.3.0 raises KeyError here: the field is gone before oslo
    # tries to backlevel its contents.
    info = _populated(host_info.HostInfo)
    manifest = {"HostPluginInfo": "1.0", "HostVIFInfo": "1.0", "HostPortProfileInfo": "1.0"}
    primitive = info.obj_to_primitive(version_manifest=manifest)
    plugin = primitive[DATA]["plugin_info"][0]
    vif_info = plugin[DATA]["vif_info"][0]
    assert vif_info[base.KEY_VERSION] == "1.0"
    assert "supported_port_profiles" not in vif_info[DATA]


# --- behaviour os-vif callers rely on ---------------------------------------------------


def test_network_constructor_defaults_match_os_vif() -> None:
    net = network.Network(id=NET_ID)
    assert net.subnets.objects == []
    assert (net.multi_host, net.should_provide_bridge, net.should_provide_vlan) == (
        False,
        False,
        False,
    )
    assert net.mtu is None


def test_boolean_defaults_of_vif_and_profile() -> None:
    ovs = vif.VIFOpenVSwitch(id=PORT_ID)
    ovs.obj_set_defaults()
    assert (ovs.active, ovs.preserve_on_delete, ovs.has_traffic_filtering) == (True, False, False)
    profile = vif.VIFPortProfileOpenVSwitch(interface_id=PORT_ID)
    profile.obj_set_defaults()
    assert (profile.create_port, profile.create_tap, profile.multiqueue) == (False, False, False)


@pytest.mark.parametrize(
    ("cls", "field", "bad"),
    [
        (vif.VIFDirect, "mode", "private"),
        (vif.VIFVHostUser, "mode", "both"),
        (vif.VIFHostDevice, "dev_type", "pci"),
    ],
)
def test_enum_fields_refuse_values_os_vif_does_not_define(
    cls: type[base.VersionedObject], field: str, bad: str
) -> None:
    obj = cls()
    with pytest.raises(ValueError):
        setattr(obj, field, bad)


def test_port_profile_field_takes_any_profile_subclass_but_nothing_else() -> None:
    ovs = vif.VIFOpenVSwitch()
    ovs.port_profile = vif.VIFPortProfile8021Qbh(profile_id="gold")
    with pytest.raises(ValueError):
        setattr(  # noqa: B010 - the wrong type on purpose, past the type checker
            ovs, "port_profile", instance_info.InstanceInfo(uuid=PORT_ID, name="i", project_id="p")
        )


def test_json_round_trip_gives_an_equal_object() -> None:
    ovs = vif.VIFOpenVSwitch(
        id=PORT_ID,
        address="fa:16:3e:5c:1d:2e",
        network=_network(),
        plugin="ovs",
        port_profile=_ovs_profile(),
        vif_name="tap3c1e2b1a-4f",
        bridge_name="br-int",
    )
    text = base.to_json(ovs)
    again = base.from_json(text)
    assert isinstance(again, vif.VIFOpenVSwitch)
    assert again == ovs
    assert base.to_json(again) == text


def test_to_json_backlevels_too() -> None:
    text = base.to_json(_network(), target_version="1.0")
    assert '"mtu"' not in text
    assert '"versioned_object.version":"1.0"' in text


def test_from_json_refuses_what_is_not_a_json_object() -> None:
    with pytest.raises(ValueError):
        base.from_json("[1, 2]")


def _host() -> host_info.HostInfo:
    def vif_info(name: str, profiles: list[str]) -> host_info.HostVIFInfo:
        return host_info.HostVIFInfo(
            vif_object_name=name,
            min_version="1.0",
            max_version="1.0",
            supported_port_profiles=[
                host_info.HostPortProfileInfo(
                    profile_object_name=p, min_version="1.0", max_version="1.4"
                )
                for p in profiles
            ],
        )

    return host_info.HostInfo(
        plugin_info=[
            host_info.HostPluginInfo(
                plugin_name="ovs",
                vif_info=[
                    vif_info("VIFOpenVSwitch", ["VIFPortProfileOpenVSwitch"]),
                    vif_info("VIFBridge", []),
                ],
            ),
            host_info.HostPluginInfo(
                plugin_name="linux_bridge", vif_info=[vif_info("VIFBridge", [])]
            ),
        ]
    )


def test_host_info_finds_plugins_and_vifs_by_name() -> None:
    host = _host()
    assert host.has_plugin("ovs") and not host.has_plugin("sriov")
    ovs = host.get_plugin("ovs")
    assert ovs.plugin_name == "ovs"
    assert ovs.has_vif("VIFOpenVSwitch") and not ovs.has_vif("VIFDirect")
    assert ovs.get_vif("VIFOpenVSwitch").has_port_profile("VIFPortProfileOpenVSwitch")
    profile = ovs.get_vif("VIFOpenVSwitch").get_port_profile("VIFPortProfileOpenVSwitch")
    assert profile.max_version == "1.4"


@pytest.mark.parametrize(
    "lookup",
    [
        lambda h: h.get_plugin("sriov"),
        lambda h: h.get_plugin("ovs").get_vif("VIFDirect"),
        lambda h: h.get_plugin("ovs").get_vif("VIFBridge").get_port_profile("VIFPortProfileFPTap"),
    ],
)
def test_host_info_lookups_raise_key_error_naming_what_is_missing(lookup: Any) -> None:
    with pytest.raises(KeyError):
        lookup(_host())


def test_filter_vif_types_keeps_named_vifs_and_drops_emptied_plugins() -> None:
    host = _host()
    host.filter_vif_types(["VIFOpenVSwitch"])
    assert [p.plugin_name for p in host.plugin_info] == ["ovs"]
    assert [v.vif_object_name for v in host.plugin_info[0].vif_info] == ["VIFOpenVSwitch"]


def test_a_host_vif_info_1_0_declares_no_port_profiles() -> None:
    old = _host().plugin_info[0].vif_info[0].obj_to_primitive(target_version="1.0")
    loaded = base.from_primitive(old)
    assert isinstance(loaded, host_info.HostVIFInfo)
    assert loaded.port_profiles() == []
    assert not loaded.has_port_profile("VIFPortProfileOpenVSwitch")


@pytest.mark.parametrize(
    ("name", "low", "high", "expected"),
    [
        ("VIFOpenVSwitch", "1.0", "1.0", "1.0"),
        ("VIFVHostUser", "1.0", "1.0", "1.0"),  # os-vif says no; vifplug backlevels
        ("VIFVHostUser", "1.0", "1.9", "1.1"),  # a newer peer reads our 1.1
        ("VIFPortProfileOpenVSwitch", "1.2", "2.5", "1.4"),
    ],
)
def test_common_version_is_the_newest_both_sides_have(
    name: str, low: str, high: str, expected: str
) -> None:
    info = host_info.HostVIFInfo(vif_object_name=name, min_version=low, max_version=high)
    assert info.get_common_version() == expected


@pytest.mark.parametrize(("low", "high"), [("1.2", "1.9"), ("0.1", "0.9"), ("2.0", "2.3")])
def test_common_version_fails_when_the_ranges_do_not_meet(low: str, high: str) -> None:
    info = host_info.HostVIFInfo(vif_object_name="VIFVHostUser", min_version=low, max_version=high)
    with pytest.raises(ValueError, match="VIFVHostUser versions"):
        info.get_common_version()


def test_common_version_of_an_unknown_object_is_a_key_error() -> None:
    info = host_info.HostPortProfileInfo(
        profile_object_name="VIFPortProfileNope", min_version="1.0", max_version="1.0"
    )
    with pytest.raises(KeyError):
        info.get_common_version()


def test_host_info_prints_as_its_primitive() -> None:
    host = _host()
    assert str(host) == str(host.obj_to_primitive())


@pytest.mark.parametrize("text", ["1", "1.0.0", "01.0", "1.04", " 1.0", "a.b", "", "1.-1"])
def test_version_tuple_is_strict(text: str) -> None:
    with pytest.raises(ValueError):
        base.version_tuple(text)
    assert not base.is_version(text)


@pytest.mark.parametrize("value", [None, 1.0, 1, b"1.0", ["1.0"]])
def test_is_version_says_no_to_what_is_not_a_string(value: object) -> None:
    assert not base.is_version(value)


def test_is_version_accepts_what_version_tuple_reads() -> None:
    assert base.is_version("1.0") and base.is_version("0.9") and base.is_version("1.14")


def test_version_in_range_compares_as_versions_inclusive() -> None:
    assert base.version_in_range("1.10", "1.9", "1.10")
    assert base.version_in_range("1.0", "1.0", "1.4")
    assert not base.version_in_range("1.9", "1.10", "1.12")
    assert not base.version_in_range("2.0", "1.0", "1.4")


def test_oldest_of_major_is_the_x_0_of_the_same_major() -> None:
    assert base.oldest_of_major("1.4") == "1.0"
    assert base.oldest_of_major("2.0") == "2.0"


def test_version_tuple_reads_major_minor() -> None:
    assert base.version_tuple("1.14") == (1, 14)
    assert base.version_string((2, 0)) == "2.0"


# --- layering -----------------------------------------------------------------------------


def _imports(path: pathlib.Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


def test_objects_package_imports_only_exceptions_of_vifplug_and_nothing_of_the_system() -> None:
    """``objects.loading`` raises vifplug's ``InvalidObject``; ``vifplug.exceptions``
    imports nothing of vifplug, so the package still depends on nothing else."""
    assert [n for n in _imports(pathlib.Path(exceptions.__file__)) if n.startswith("vifplug")] == []
    root = pathlib.Path(vifplug.objects.__file__).parent
    offenders = []
    for path in sorted(root.glob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            inside = name == "vifplug.objects" or name.startswith("vifplug.objects.")
            allowed = inside or name == "vifplug.exceptions"
            if (top == "vifplug" and not allowed) or top in ("ovs", "pyroute2", "os_vif"):
                offenders.append(f"{path.name}: {name}")
    assert offenders == []
