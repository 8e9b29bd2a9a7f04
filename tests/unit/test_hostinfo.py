"""This host's HostInfo: building it from the plugins' descriptions, the
manifest syntax, backlevelling for an older peer, and the version range a
plugin accepts (``vifplug.negotiation.hostinfo``)."""

from __future__ import annotations

import json
import re

import pytest

import host_infos
from vifplug import exceptions
from vifplug.negotiation import hostinfo
from vifplug.objects import base
from vifplug.objects import host_info as hi

DATA = base.KEY_DATA
VERSION = base.KEY_VERSION


# --- describing the host ----------------------------------------------------------


def test_build_host_info_sorts_plugins_by_name() -> None:
    host = host_infos.sample()
    assert [p.plugin_name for p in host.plugin_info] == ["linux_bridge", "ovs"]


def test_build_host_info_refuses_two_plugins_with_one_name() -> None:
    twice = [host_infos.plugin("ovs"), host_infos.plugin("ovs")]
    with pytest.raises(ValueError, match="ovs"):
        hostinfo.build_host_info(twice)


@pytest.mark.parametrize(
    ("vif_info", "says"),
    [
        (
            hi.HostVIFInfo(vif_object_name="VIFNope", min_version="1.0", max_version="1.0"),
            "VIFNope, which is not a VIFBase",
        ),
        (
            hi.HostVIFInfo(vif_object_name="Network", min_version="1.0", max_version="1.0"),
            "Network, which is not a VIFBase",
        ),
        (
            hi.HostVIFInfo(vif_object_name="VIFOpenVSwitch", min_version="1.0", max_version="1.1"),
            "VIFOpenVSwitch 1.0 to 1.1, but vifplug reads VIFOpenVSwitch 1.0 to 1.0 only",
        ),
        (
            hi.HostVIFInfo(vif_object_name="VIFVHostUser", min_version="1.1", max_version="1.0"),
            "VIFVHostUser 1.1 to 1.0",
        ),
        (
            hi.HostVIFInfo(vif_object_name="VIFVHostUser", min_version="0.1", max_version="1.0"),
            "VIFVHostUser 0.1 to 1.0",
        ),
        (
            host_infos.vif("VIFDirect", "1.0", "1.0", ("VIFDirect", "1.0", "1.0")),
            "VIFDirect, which is not a VIFPortProfileBase",
        ),
    ],
)
def test_build_host_info_refuses_declarations_vifplug_cannot_honour(
    vif_info: hi.HostVIFInfo, says: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        hostinfo.build_host_info([host_infos.plugin("ovs", vif_info)])


# --- parse_manifest -------------------------------------------------------------------


def test_parse_manifest_reads_entries_and_tolerates_spaces() -> None:
    assert hostinfo.parse_manifest(" HostInfo:1.0, HostPluginInfo : 1.0 ,HostVIFInfo:1.0") == {
        "HostInfo": "1.0",
        "HostPluginInfo": "1.0",
        "HostVIFInfo": "1.0",
    }


def test_parse_manifest_accepts_a_repeated_entry_with_the_same_version() -> None:
    assert hostinfo.parse_manifest("HostVIFInfo:1.0,HostVIFInfo:1.0") == {"HostVIFInfo": "1.0"}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("HostInfo:1.0,,HostVIFInfo:1.0", "entry 2 of the manifest is empty"),
        ("HostInfo:1.0,", "entry 2 of the manifest is empty"),
        ("HostInfo", "'HostInfo' is not of the form Name:X.Y"),
        ("HostInfo=1.0", "is not of the form Name:X.Y"),
        ("Host Info:1.0", "'Host Info' in the manifest is not an object name"),
        (":1.0", "'' in the manifest is not an object name"),
        ("HostInfo:1", "version of HostInfo in the manifest is '1'"),
        ("HostInfo:1.0.0", "version of HostInfo in the manifest is '1.0.0'"),
        ("HostInfo:latest", "version of HostInfo in the manifest is 'latest'"),
        ("HostVIFInfo:1.0,HostVIFInfo:1.1", "names HostVIFInfo twice, as 1.0 and 1.1"),
    ],
)
def test_parse_manifest_explains_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(exceptions.InvalidRequest) as caught:
        hostinfo.parse_manifest(text)
    assert says in str(caught.value)
    assert caught.value.code == "invalid_request"
    assert "\n" not in str(caught.value)


def test_parse_manifest_refuses_non_strings_and_huge_input() -> None:
    with pytest.raises(exceptions.InvalidRequest, match="must be a string"):
        hostinfo.parse_manifest(["HostInfo:1.0"])
    with pytest.raises(exceptions.InvalidRequest, match="longer than"):
        hostinfo.parse_manifest("HostInfo:1.0," * 5000)


# --- backlevel ------------------------------------------------------------------------


def test_backlevel_without_arguments_is_the_newest_primitive() -> None:
    host = host_infos.sample()
    assert hostinfo.backlevel(host) == host.obj_to_primitive()
    assert {v[VERSION] for v in host_infos.vif_infos(hostinfo.backlevel(host))} == {"1.1"}


def test_backlevel_to_version_1_0_is_host_info_1_0() -> None:
    primitive = hostinfo.backlevel(host_infos.sample(), version="1.0")
    assert primitive[VERSION] == "1.0"
    # HostInfo 1.0 has always been 1.0: what is inside keeps its version.
    assert {v[VERSION] for v in host_infos.vif_infos(primitive)} == {"1.1"}


@pytest.mark.parametrize("version", ["2.0", "0.9", "1.1", "1.10"])
def test_backlevel_refuses_versions_it_cannot_produce_naming_the_range(version: str) -> None:
    with pytest.raises(exceptions.VersionNotAvailable) as caught:
        hostinfo.backlevel(host_infos.sample(), version=version)
    assert caught.value.details() == {
        "obj_name": "HostInfo",
        "version": version,
        "min_version": "1.0",
        "max_version": "1.0",
    }
    assert caught.value.code == "version_not_available"


@pytest.mark.parametrize("version", ["abc", "1", "1.0.0", "", " 1.0", "v1.0", "1.0\n"])
def test_backlevel_refuses_malformed_versions_as_invalid_requests(version: str) -> None:
    with pytest.raises(exceptions.InvalidRequest, match=r"MAJOR\.MINOR"):
        hostinfo.backlevel(host_infos.sample(), version=version)


def test_backlevel_with_an_old_full_manifest_makes_host_vif_info_1_0() -> None:
    primitive = hostinfo.backlevel(
        host_infos.sample(), manifest="HostInfo:1.0,HostPluginInfo:1.0,HostVIFInfo:1.0"
    )
    infos = host_infos.vif_infos(primitive)
    assert {v[VERSION] for v in infos} == {"1.0"}
    assert all("supported_port_profiles" not in v[DATA] for v in infos)
    assert [v[DATA]["vif_object_name"] for v in infos] == [
        "VIFBridge",
        "VIFOpenVSwitch",
        "VIFVHostUser",
    ]


def test_backlevel_reaches_a_nested_object_even_when_its_parent_is_unnamed() -> None:
    # oslo alone stops at HostPluginInfo, which this manifest does not name.
    primitive = hostinfo.backlevel(host_infos.sample(), manifest="HostVIFInfo:1.0")
    assert {v[VERSION] for v in host_infos.vif_infos(primitive)} == {"1.0"}
    assert {p[VERSION] for p in primitive[DATA]["plugin_info"]} == {"1.0"}


def test_backlevel_leaves_objects_the_manifest_does_not_name() -> None:
    primitive = hostinfo.backlevel(host_infos.sample(), manifest="HostPluginInfo:1.0")
    assert {v[VERSION] for v in host_infos.vif_infos(primitive)} == {"1.1"}
    assert all("supported_port_profiles" in v[DATA] for v in host_infos.vif_infos(primitive))


def test_backlevel_answers_a_newer_peer_with_our_versions() -> None:
    primitive = hostinfo.backlevel(host_infos.sample(), manifest="HostInfo:1.3,HostVIFInfo:1.9")
    assert primitive[VERSION] == "1.0"
    assert {v[VERSION] for v in host_infos.vif_infos(primitive)} == {"1.1"}


def test_backlevel_ignores_manifest_entries_for_objects_outside_host_info() -> None:
    primitive = hostinfo.backlevel(
        host_infos.sample(), manifest="VIFOpenVSwitch:9.0,Flavor:1.2,Instance:2.7,HostVIFInfo:1.0"
    )
    assert {v[VERSION] for v in host_infos.vif_infos(primitive)} == {"1.0"}


@pytest.mark.parametrize(
    ("manifest", "obj_name", "low", "high"),
    [
        ("HostVIFInfo:2.0", "HostVIFInfo", "1.0", "1.1"),
        ("HostVIFInfo:0.9", "HostVIFInfo", "1.0", "1.1"),
        ("HostInfo:0.5", "HostInfo", "1.0", "1.0"),
        ("HostPortProfileInfo:3.1", "HostPortProfileInfo", "1.0", "1.0"),
    ],
)
def test_backlevel_refuses_a_manifest_it_cannot_satisfy(
    manifest: str, obj_name: str, low: str, high: str
) -> None:
    with pytest.raises(exceptions.VersionNotAvailable) as caught:
        hostinfo.backlevel(host_infos.sample(), manifest=manifest)
    details = caught.value.details()
    assert (details["obj_name"], details["min_version"], details["max_version"]) == (
        obj_name,
        low,
        high,
    )


def test_backlevel_accepts_a_manifest_as_a_mapping_and_validates_it() -> None:
    primitive = hostinfo.backlevel(host_infos.sample(), manifest={"HostVIFInfo": "1.0"})
    assert {v[VERSION] for v in host_infos.vif_infos(primitive)} == {"1.0"}
    with pytest.raises(exceptions.InvalidRequest):
        hostinfo.backlevel(host_infos.sample(), manifest={"HostVIFInfo": "one"})
    with pytest.raises(exceptions.InvalidRequest):
        hostinfo.backlevel(host_infos.sample(), manifest={"bad name": "1.0"})


def test_backlevel_version_wins_over_the_manifests_host_info_entry() -> None:
    with pytest.raises(exceptions.VersionNotAvailable):
        hostinfo.backlevel(host_infos.sample(), version="1.1", manifest="HostInfo:1.0")
    primitive = hostinfo.backlevel(host_infos.sample(), version="1.0", manifest="HostVIFInfo:1.0")
    assert primitive[VERSION] == "1.0"
    assert {v[VERSION] for v in host_infos.vif_infos(primitive)} == {"1.0"}


def test_backlevel_with_manifest_naming_port_profiles_drops_them_with_host_vif_info_1_0() -> None:
    primitive = hostinfo.backlevel(
        host_infos.sample(), manifest="HostVIFInfo:1.0,HostPortProfileInfo:1.0"
    )
    assert all("supported_port_profiles" not in v[DATA] for v in host_infos.vif_infos(primitive))


def test_backlevel_does_not_change_the_host_info() -> None:
    host = host_infos.sample()
    before = base.to_json(host)
    hostinfo.backlevel(host, manifest="HostVIFInfo:1.0")
    assert base.to_json(host) == before


def test_backlevel_output_is_json_serialisable() -> None:
    primitive = hostinfo.backlevel(host_infos.sample(), manifest="HostVIFInfo:1.0")
    assert json.loads(json.dumps(primitive)) == primitive


# --- ranges -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.0", "1.3", "1.4"])
def test_check_version_accepts_the_range_inclusive(version: str) -> None:
    hostinfo.check_version("VIFPortProfileOpenVSwitch", version, "1.0", "1.4", plugin="ovs")


@pytest.mark.parametrize("version", ["0.9", "1.5", "2.0", "1.10"])
def test_check_version_rejects_outside_the_range_naming_it(version: str) -> None:
    with pytest.raises(exceptions.UnsupportedVersion) as caught:
        hostinfo.check_version("VIFVHostUser", version, "1.1", "1.4", plugin="ovs")
    assert str(caught.value) == (
        f"VIFVHostUser version {version} is outside the range 1.1 to 1.4 that plugin ovs accepts."
    )
    assert caught.value.details()["min_version"] == "1.1"
    assert caught.value.details()["max_version"] == "1.4"
    assert caught.value.code == "unsupported_version"


def test_check_version_calls_a_malformed_version_invalid() -> None:
    with pytest.raises(exceptions.InvalidObject, match=r"not of the form X\.Y"):
        hostinfo.check_version("VIFVHostUser", "1", "1.0", "1.1", plugin="ovs")
