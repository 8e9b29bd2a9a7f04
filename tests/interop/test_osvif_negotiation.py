"""HostInfo negotiation against the real os-vif, current and older.

The contract: any HostInfo the daemon returns loads with os-vif's
``obj_from_primitive()``, and ``?manifest=`` lets a peer with an older os-vif
(HostVIFInfo 1.0, no HostPortProfileInfo) read it.  The older peer is played
by the os-vif helper with its registry cut back to what such an os-vif had.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import osvif_samples
import pytest

import host_infos
from vifplug.negotiation import hostinfo, refusal
from vifplug.objects import base as obj_base
from vifplug.objects import host_info as hi

OsVif = Callable[..., dict[str, Any]]


def _host_info() -> hi.HostInfo:
    """A HostInfo like the daemon's: three plugins, port profiles declared."""
    vif, plugin = host_infos.vif, host_infos.plugin
    ovs = plugin(
        "ovs",
        vif(
            "VIFOpenVSwitch",
            "1.0",
            "1.0",
            ("VIFPortProfileOpenVSwitch", "1.0", "1.4"),
            ("VIFPortProfileOVSRepresentor", "1.0", "1.4"),
        ),
        vif("VIFVHostUser", "1.0", "1.1", ("VIFPortProfileFPOpenVSwitch", "1.0", "1.4")),
    )
    bridge = plugin("linux_bridge", vif("VIFBridge", "1.0", "1.0"))
    noop = plugin("noop", vif("VIFGeneric", "1.0", "1.0"))
    return hostinfo.build_host_info([ovs, bridge, noop])


def _names_and_versions(primitive: Any) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    if isinstance(primitive, dict):
        if obj_base.KEY_NAME in primitive:
            found.add((primitive[obj_base.KEY_NAME], primitive[obj_base.KEY_VERSION]))
        for value in primitive.values():
            found |= _names_and_versions(value)
    elif isinstance(primitive, list):
        for value in primitive:
            found |= _names_and_versions(value)
    return found


REQUESTS = [
    pytest.param({}, id="newest"),
    pytest.param({"version": "1.0"}, id="version-1.0"),
    pytest.param({"manifest": "HostInfo:1.0,HostPluginInfo:1.0,HostVIFInfo:1.0"}, id="old-full"),
    pytest.param({"manifest": "HostVIFInfo:1.0"}, id="vifinfo-only"),
    pytest.param({"manifest": "HostVIFInfo:1.0,HostPortProfileInfo:1.0"}, id="vif-and-pp"),
    pytest.param({"manifest": "HostVIFInfo:1.1,HostPortProfileInfo:1.0"}, id="current"),
    pytest.param({"manifest": "HostVIFInfo:1.7,Flavor:1.2"}, id="newer-peer"),
]


@pytest.mark.parametrize("request_args", REQUESTS)
def test_every_host_info_vifplug_serves_loads_in_osvif(
    osvif: OsVif, request_args: dict[str, str]
) -> None:
    served = hostinfo.backlevel(_host_info(), **request_args)
    (result,) = osvif("load", primitives=[served])["results"]
    assert "error" not in result, result.get("error")
    assert osvif_samples.field_differences(served, result["primitive"]) == []


@pytest.mark.parametrize("request_args", REQUESTS)
def test_every_host_info_vifplug_serves_loads_in_an_older_osvif_when_asked(
    osvif: OsVif, request_args: dict[str, str]
) -> None:
    served = hostinfo.backlevel(_host_info(), **request_args)
    (result,) = osvif("load", primitives=[served], old=True)["results"]
    if ("HostVIFInfo", "1.1") in _names_and_versions(served):
        # Not asked to backlevel HostVIFInfo: the older peer refuses, in
        # words the client side of the negotiation understands.
        assert "IncompatibleObjectVersion" in result["error"]
        assert refusal.manifest_from_error(result["error"]) == {"HostVIFInfo": "1.0"}
    else:
        assert "error" not in result, result.get("error")
        assert osvif_samples.field_differences(served, result["primitive"]) == []


def test_older_peer_refusal_then_retry_with_its_manifest(osvif: OsVif) -> None:
    """The negotiation of seed 004, driven by the peer's own error message."""
    host_info = _host_info()
    first = hostinfo.backlevel(host_info)
    (refused,) = osvif("load", primitives=[first], old=True)["results"]
    error = {"error": {"code": "bad_request", "message": refused["error"]}}

    # The refusal is about HostVIFInfo, so it does not ask for another HostInfo...
    assert refusal.max_version_from_error(error) is None
    assert refusal.backlevel_version_from_error(error, sent="1.0") is None
    # ...but for a manifest, which the retry uses.
    manifest = refusal.manifest_from_error(error)
    assert manifest == {"HostVIFInfo": "1.0"}

    retry = hostinfo.backlevel(host_info, manifest=manifest)
    (accepted,) = osvif("load", primitives=[retry], old=True)["results"]
    assert "error" not in accepted, accepted.get("error")
    assert osvif_samples.field_differences(retry, accepted["primitive"]) == []
    assert ("HostVIFInfo", "1.0") in _names_and_versions(retry)
    assert "HostPortProfileInfo" not in {n for n, _ in _names_and_versions(retry)}
    # Nothing else was lost: same plugins, same VIF objects and ranges.
    plugins = accepted["primitive"][obj_base.KEY_DATA]["plugin_info"]
    assert [p[obj_base.KEY_DATA]["plugin_name"] for p in plugins] == ["linux_bridge", "noop", "ovs"]
    ovs_vifs = [v[obj_base.KEY_DATA] for v in plugins[2][obj_base.KEY_DATA]["vif_info"]]
    assert ovs_vifs == [
        {"vif_object_name": "VIFOpenVSwitch", "min_version": "1.0", "max_version": "1.0"},
        {"vif_object_name": "VIFVHostUser", "min_version": "1.0", "max_version": "1.1"},
    ]


@pytest.mark.parametrize(
    "manifest",
    [
        "HostInfo:1.0,HostPluginInfo:1.0,HostVIFInfo:1.0",
        "HostPluginInfo:1.0,HostVIFInfo:1.0,HostPortProfileInfo:1.0",
        "HostVIFInfo:1.1",
    ],
)
def test_manifest_backlevel_equals_osvif_given_the_completed_manifest(
    osvif: OsVif, manifest: str
) -> None:
    """What vifplug serves for ?manifest= is what os-vif's own
    obj_to_primitive makes with the manifest vifplug hands to oslo (the
    peer's entries, completed with this host's versions)."""
    host_info = _host_info()
    ours = hostinfo.backlevel(host_info, manifest=manifest)
    completed = {name: cls.VERSION for name, cls in obj_base.classes().items()}
    completed.update(hostinfo.parse_manifest(manifest))
    item = {"primitive": host_info.obj_to_primitive(), "manifest": completed}
    (theirs,) = osvif("backlevel", items=[item])["results"]
    if "error" in theirs:
        # os-vif 5.3.0 crashes (KeyError) backlevelling HostVIFInfo to 1.0
        # under a manifest that also names HostPortProfileInfo; vifplug
        # does not.  Anything else is a real difference.
        assert "KeyError: 'supported_port_profiles'" in theirs["error"], theirs["error"]
        assert ("HostVIFInfo", "1.0") in _names_and_versions(ours)
        return
    assert osvif_samples.canonical(ours) == osvif_samples.canonical(theirs["primitive"])
