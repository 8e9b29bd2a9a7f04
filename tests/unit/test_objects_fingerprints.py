"""Pinned fingerprints of every wire object: an accidental change fails here.

The fingerprint (oslo's ObjectVersionChecker) hashes each object's fields,
their types, nullability and defaults.  These values are os-vif 5.3.0's own;
tests/interop/test_osvif_objects.py proves vifplug computes the same ones as
the installed os-vif.  If this test fails, a field changed: that is a wire
change.  Either undo it or, if os-vif made the same change, bump VERSION,
extend ``fields_added_in`` and update the hash here, in that order.
"""

from __future__ import annotations

from oslo_versionedobjects import fixture

from vifplug.objects import base

EXPECTED_FINGERPRINTS = {
    "DatapathOffloadBase": "1.0-77509ea1ea0dd750d5864b9bd87d3f9d",
    "DatapathOffloadRepresentor": "1.0-802a5dff22f73046df3742c815c51421",
    "FixedIP": "1.0-d1a0ec7e7b6ce021a784c54d44cce009",
    "FixedIPList": "1.0-15ecf022a68ddbb8c2a6739cfc9f8f5e",
    "HostInfo": "1.0-4dba5ce236ea2dc559de8764995dd247",
    "HostPluginInfo": "1.0-5204e579864981c9891ecb5d1c9329f2",
    "HostPortProfileInfo": "1.0-e0bc9228c1456b220830d67b05bc4bf2",
    "HostVIFInfo": "1.1-00fdbeba3f9bb3bd2a723c17023ba182",
    "InstanceInfo": "1.0-84104d3435046b1a282ac8265ec2a976",
    "Network": "1.1-27a8a3e236d1d239121668a590130154",
    "Route": "1.0-5ca049cb82c4d4ec5edb1b839c1429c7",
    "RouteList": "1.0-15ecf022a68ddbb8c2a6739cfc9f8f5e",
    "Subnet": "1.0-6a8c192ef7492120d1a5e0fd08e44272",
    "SubnetList": "1.0-15ecf022a68ddbb8c2a6739cfc9f8f5e",
    "VIFBase": "1.0-4a5a8881dc999752cb050dd443458b6a",
    "VIFBridge": "1.0-e78d355f3505361fafbf0797ffad484a",
    "VIFDirect": "1.0-05c939280f4025fd1f7efb921a835c57",
    "VIFGeneric": "1.0-c72e637ed620f0135ea50a9409a3f389",
    "VIFHostDevice": "1.0-bb090f1869c3b4df36efda216ab97a61",
    "VIFNestedDPDK": "1.0-fdbaf6b20afd116529929b21aa7158dc",
    "VIFOpenVSwitch": "1.0-e78d355f3505361fafbf0797ffad484a",
    "VIFPortProfile8021Qbg": "1.1-b3011621809dca9216b50579ce9d6b19",
    "VIFPortProfile8021Qbh": "1.1-226b61b2e76ba452f7b31530cff80ac9",
    "VIFPortProfileBase": "1.1-4982d1621df12ebd1f3b07948f3d0e5f",
    "VIFPortProfileFPBridge": "1.1-49f1952bf50bab7a95112c908534751f",
    "VIFPortProfileFPOpenVSwitch": "1.4-20904c1dcdac0641cabf7b02525973bd",
    "VIFPortProfileFPTap": "1.1-fd178229477604dfb65de5ce929488e5",
    "VIFPortProfileK8sDPDK": "1.1-e2a2abd112b14e0239e76b99d9b252ae",
    "VIFPortProfileOVSRepresentor": "1.4-82b7292ee4cd6f808b724d2f5648932b",
    "VIFPortProfileOpenVSwitch": "1.4-54fb321f2b70c37d392fadc226c889e7",
    "VIFVHostUser": "1.1-1f95b43be1f884f090ca1f4d79adfd35",
}

# Which object each object field points at: oslo's fingerprint does not see
# it (an ObjectField prints as "Object(...)" whatever its target), so it is
# pinned separately.
EXPECTED_DEPENDENCIES = {
    "Network": {"SubnetList": "1.0"},
    "Subnet": {"FixedIPList": "1.0", "RouteList": "1.0"},
    "VIFBase": {"Network": "1.1", "VIFPortProfileBase": "1.1"},
    "VIFGeneric": {"Network": "1.1", "VIFPortProfileBase": "1.1"},
    "VIFBridge": {"Network": "1.1", "VIFPortProfileBase": "1.1"},
    "VIFOpenVSwitch": {"Network": "1.1", "VIFPortProfileBase": "1.1"},
    "VIFDirect": {"Network": "1.1", "VIFPortProfileBase": "1.1"},
    "VIFVHostUser": {"Network": "1.1", "VIFPortProfileBase": "1.1"},
    "VIFHostDevice": {"Network": "1.1", "VIFPortProfileBase": "1.1"},
    "VIFNestedDPDK": {"Network": "1.1", "VIFPortProfileBase": "1.1"},
    "VIFPortProfileBase": {"DatapathOffloadBase": "1.0"},
    "VIFPortProfileOpenVSwitch": {"DatapathOffloadBase": "1.0"},
    "VIFPortProfileFPOpenVSwitch": {"DatapathOffloadBase": "1.0"},
    "VIFPortProfileOVSRepresentor": {"DatapathOffloadBase": "1.0"},
    "VIFPortProfileFPBridge": {"DatapathOffloadBase": "1.0"},
    "VIFPortProfileFPTap": {"DatapathOffloadBase": "1.0"},
    "VIFPortProfile8021Qbg": {"DatapathOffloadBase": "1.0"},
    "VIFPortProfile8021Qbh": {"DatapathOffloadBase": "1.0"},
    "VIFPortProfileK8sDPDK": {"DatapathOffloadBase": "1.0"},
}


def _checker() -> fixture.ObjectVersionChecker:
    # Our own index, not oslo's global registry: only vifplug's classes.
    return fixture.ObjectVersionChecker({n: [c] for n, c in base.classes().items()})


def test_every_object_has_a_pinned_fingerprint() -> None:
    assert sorted(base.classes()) == sorted(EXPECTED_FINGERPRINTS)


def test_fingerprints_are_unchanged() -> None:
    expected, actual = _checker().test_hashes(EXPECTED_FINGERPRINTS)
    assert expected == actual, (
        "An os_vif object changed: bump its VERSION and backlevelling, then update the hash."
    )


def test_object_fields_point_at_the_pinned_objects() -> None:
    # ListOfObjectsField targets (HostInfo -> HostPluginInfo ...) are not in
    # oslo's dependency tree; they are pinned by the checks below.
    assert _checker().get_dependency_tree() == EXPECTED_DEPENDENCIES


def test_list_fields_point_at_the_pinned_objects() -> None:
    targets = {
        (name, field_name): field.objname
        for name, cls in base.classes().items()
        for field_name, field in cls.fields.items()
        if hasattr(field, "objname")
    }
    list_targets = {
        k: v
        for k, v in targets.items()
        if k[1] in ("objects", "plugin_info", "vif_info", "supported_port_profiles")
    }
    assert list_targets == {
        ("FixedIPList", "objects"): "FixedIP",
        ("RouteList", "objects"): "Route",
        ("SubnetList", "objects"): "Subnet",
        ("HostInfo", "plugin_info"): "HostPluginInfo",
        ("HostPluginInfo", "vif_info"): "HostVIFInfo",
        ("HostVIFInfo", "supported_port_profiles"): "HostPortProfileInfo",
    }
