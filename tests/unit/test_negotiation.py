"""Negotiation logic: HostInfo backlevelling, manifests, ranges, error bodies,
and validation of the primitives the network manager sends."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

import host_infos
from vifplug import exceptions
from vifplug.negotiation import hostinfo, refusal
from vifplug.objects import base, loading
from vifplug.objects import host_info as hi
from vifplug.objects import vif as vifs

DATA = base.KEY_DATA
VERSION = base.KEY_VERSION
PORT_ID = "3c1e2b1a-4f5d-4e6c-8a7b-9c0d1e2f3a4b"
INSTANCE_ID = "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d"


def _vif_primitive(**data: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": PORT_ID,
        "plugin": "ovs",
        "address": "fa:16:3e:5c:1d:2e",
        "vif_name": "tap3c1e2b1a-4f",
        "bridge_name": "br-int",
        "port_profile": vifs.VIFPortProfileOpenVSwitch(
            interface_id=PORT_ID, profile_id=""
        ).obj_to_primitive(),
    }
    values.update(data)
    return {
        base.KEY_NAME: "VIFOpenVSwitch",
        base.KEY_NAMESPACE: "os_vif",
        VERSION: "1.0",
        DATA: values,
    }


def _instance_primitive(**data: Any) -> dict[str, Any]:
    values = {"uuid": INSTANCE_ID, "name": "instance-0000002a", "project_id": "4f1e2d3c"}
    values.update(data)
    return {
        base.KEY_NAME: "InstanceInfo",
        base.KEY_NAMESPACE: "os_vif",
        VERSION: "1.0",
        DATA: values,
    }


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


# --- reading a peer's refusal ------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"code": "x", "message": "no", "details": {"max_version": "1.0"}}},
        json.dumps({"error": {"details": {"max_version": "1.0"}}}),
        json.dumps({"error": {"details": {"max_version": "1.0"}}}).encode(),
        {"error": {"details": {"obj_name": "HostInfo", "max_version": "1.0"}}},
        {"details": {"max_version": "1.0"}},
        {"max_version": "1.0"},
        "HostInfo: maximum version 1.0",
        "unsupported HostInfo; maximum version is 1.0",
        "the manager reads HostInfo max_version=1.0 only",
        "max version: 1.0",
        "Maximum supported version of HostInfo is 1.0.",
        "Version 1.1 of HostInfo is not supported, supported version is 1.0",
        {"error": {"message": "HostInfo maximum version 1.0 (got 1.1)"}},
        {"message": "maximum version 1.0"},
        {"error": "maximum version 1.0"},
    ],
)
def test_max_version_from_error_understands_the_usual_shapes(body: Any) -> None:
    assert refusal.max_version_from_error(body) == "1.0"


@pytest.mark.parametrize(
    "body",
    [
        None,
        "",
        "internal server error",
        b"\xff\xfe",
        "[1, 2]",
        {"error": {"details": {"max_version": "one"}}},
        {"error": {"details": {"max_version": 1.0}}},
        {"error": {"details": {"obj_name": "HostVIFInfo", "max_version": "1.0"}}},
        "Version 1.1 of HostVIFInfo is not supported, supported version is 1.0",
        {"error": {"message": "maximum version 1.x"}},
    ],
)
def test_max_version_from_error_finds_nothing_where_nothing_is_said(body: Any) -> None:
    assert refusal.max_version_from_error(body) is None


def test_backlevel_version_from_error_gives_the_version_to_retry_with() -> None:
    body = {"error": {"details": {"max_version": "1.0"}}}
    assert refusal.backlevel_version_from_error(body) == "1.0"
    # Already sent 1.0: retrying with 1.0 would loop.
    assert refusal.backlevel_version_from_error(body, sent="1.0") is None
    # A peer newer than us reads ours.
    assert refusal.backlevel_version_from_error("maximum version 1.7") == "1.0"
    assert refusal.backlevel_version_from_error("no version here") is None


@pytest.mark.parametrize("peer", ["0.9", "2.0"])
def test_backlevel_version_from_error_cannot_go_where_we_cannot_produce(peer: str) -> None:
    with pytest.raises(exceptions.VersionNotAvailable):
        refusal.backlevel_version_from_error({"max_version": peer})


def test_manifest_from_error_collects_per_object_limits() -> None:
    body = {
        "error": {
            "message": "Version 1.1 of HostVIFInfo is not supported, supported version is 1.0",
            "details": {"obj_name": "HostPortProfileInfo", "max_version": "1.0"},
        }
    }
    manifest = refusal.manifest_from_error(body)
    assert manifest == {"HostVIFInfo": "1.0", "HostPortProfileInfo": "1.0"}
    primitive = hostinfo.backlevel(host_infos.sample(), manifest=manifest)
    assert {v[VERSION] for v in host_infos.vif_infos(primitive)} == {"1.0"}


def test_vifplugs_own_406_envelope_reads_back() -> None:
    """The envelope the API makes of VersionNotAvailable is understood by the
    client side of the negotiation."""
    with pytest.raises(exceptions.VersionNotAvailable) as caught:
        hostinfo.backlevel(host_infos.sample(), version="1.1")
    error = caught.value
    envelope = {"error": {"code": error.code, "message": error.message, "details": error.details()}}
    assert refusal.max_version_from_error(json.dumps(envelope)) == "1.0"


# --- validating primitives ------------------------------------------------------------------


def test_load_vif_loads_an_os_vif_primitive() -> None:
    vif = loading.load_vif(_vif_primitive())
    assert isinstance(vif, vifs.VIFOpenVSwitch)
    assert (vif.id, vif.plugin, vif.vif_name) == (PORT_ID, "ovs", "tap3c1e2b1a-4f")
    assert isinstance(vif.port_profile, vifs.VIFPortProfileOpenVSwitch)


def test_primitive_identity_names_the_object_without_judging_its_version() -> None:
    newer = _vif_primitive()
    newer[VERSION] = "1.7"
    assert loading.primitive_identity(newer, what="vif") == ("VIFOpenVSwitch", "1.7")


def _broken(change: Any) -> Any:
    primitive = _vif_primitive()
    result = change(primitive)
    return primitive if result is None else result


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda p: [p], "it is a JSON array, not a JSON object"),
        (lambda p: "VIFOpenVSwitch", "it is a JSON string"),
        (lambda p: p.pop(DATA) and None, "it has no versioned_object.data key"),
        (lambda p: p.pop(base.KEY_NAME) and None, "it has no versioned_object.name key"),
        (lambda p: p.update({base.KEY_NAMESPACE: "nova"}), "its namespace is 'nova', not 'os_vif'"),
        (lambda p: p.update({base.KEY_NAME: "VIFNope"}), "'VIFNope' is not an os_vif object"),
        (lambda p: p.update({base.KEY_NAME: 42}), "its object name is a JSON number"),
        (
            lambda p: p.update({base.KEY_NAME: "InstanceInfo"}),
            "it is a InstanceInfo, not a VIFBase",
        ),
        (lambda p: p.update({base.KEY_NAME: "VIFPortProfileOpenVSwitch"}), "not a VIFBase"),
        (lambda p: p.update({VERSION: "1"}), "its version '1' is not of the form X.Y"),
        (lambda p: p.update({VERSION: 1.0}), "its version '1.0' is not of the form X.Y"),
        (lambda p: p.update({DATA: []}), "versioned_object.data is not a JSON object"),
        (lambda p: p.update({base.KEY_CHANGES: "id"}), "changes is not a list of field names"),
        (lambda p: p[DATA].update({"id": "port-1"}), "its id 'port-1' is not a UUID"),
        (lambda p: p[DATA].pop("id") and None, "its id is missing or not a string"),
        (lambda p: p[DATA].pop("plugin") and None, "its plugin is missing"),
        (lambda p: p[DATA].update({"plugin": ""}), "its plugin is missing"),
        (lambda p: p.update({VERSION: "1.1"}), "it is VIFOpenVSwitch 1.1, and this host knows"),
        (lambda p: p.update({VERSION: "2.0"}), "this host knows VIFOpenVSwitch 1.0 to 1.0"),
        (lambda p: p[DATA].update({"address": "not-a-mac"}), "its data does not load"),
        (lambda p: p[DATA].update({"port_profile": "ovs"}), "its data does not load"),
        (
            lambda p: p[DATA].update({"network": {"versioned_object.name": "Network"}}),
            "its data does not load",
        ),
        (
            lambda p: p[DATA]["port_profile"].update({base.KEY_NAME: "VIFPortProfileNope"}),
            "its data does not load",
        ),
        (
            lambda p: p[DATA]["port_profile"].update({VERSION: "1.9"}),
            "its data does not load",
        ),
        (
            lambda p: p[DATA].update({"port_profile": _instance_primitive()}),
            "its data does not load",
        ),
    ],
)
def test_load_vif_explains_in_one_sentence_what_is_wrong(make: Any, says: str) -> None:
    primitive = _broken(make)
    with pytest.raises(exceptions.InvalidObject) as caught:
        loading.load_vif(primitive)
    message = str(caught.value)
    assert says in message
    assert message.startswith("The VIF is not a valid os_vif object: ")
    assert message.endswith(".") and "\n" not in message
    assert caught.value.code == "invalid_object"
    json.dumps(caught.value.details())  # goes into the error envelope as is


def test_load_vif_ignores_data_keys_its_version_does_not_have_as_os_vif_does() -> None:
    primitive = _vif_primitive(vif_name="tap0", future_field={"x": 1})
    vif = loading.load_vif(primitive)
    assert isinstance(vif, vifs.VIFOpenVSwitch)
    assert vif.vif_name == "tap0"
    assert "future_field" not in vif.obj_to_primitive()[DATA]


def test_load_vif_accepts_a_vif_with_only_id_and_plugin() -> None:
    primitive = _vif_primitive()
    primitive[DATA] = {"id": PORT_ID, "plugin": "ovs"}
    vif = loading.load_vif(primitive)
    assert not vif.obj_attr_is_set("vif_name")


def test_load_vif_does_not_modify_its_input() -> None:
    primitive = _vif_primitive()
    before = copy.deepcopy(primitive)
    loading.load_vif(primitive)
    assert primitive == before


def test_load_instance_loads_and_checks_the_uuid() -> None:
    instance = loading.load_instance(_instance_primitive())
    assert (instance.uuid, instance.name) == (INSTANCE_ID, "instance-0000002a")
    with pytest.raises(exceptions.InvalidObject, match="The instance is not a valid os_vif"):
        loading.load_instance(_instance_primitive(uuid="vm-1"))
    with pytest.raises(
        exceptions.InvalidObject, match="it is a VIFOpenVSwitch, not a InstanceInfo"
    ):
        loading.load_instance(_vif_primitive())
