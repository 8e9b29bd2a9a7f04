"""HostInfo objects for the negotiation tests, built field by field as
``PluginBase.describe`` builds them (importable as ``host_infos``)."""

from __future__ import annotations

from typing import Any

from vifplug.negotiation import hostinfo
from vifplug.objects import base
from vifplug.objects import host_info as hi


def vif(name: str, low: str, high: str, *profiles: tuple[str, str, str]) -> hi.HostVIFInfo:
    """VIF object ``name`` accepted from ``low`` to ``high``, with port
    profiles given as ``(name, low, high)``."""
    return hi.HostVIFInfo(
        vif_object_name=name,
        min_version=low,
        max_version=high,
        supported_port_profiles=[
            hi.HostPortProfileInfo(profile_object_name=p, min_version=lo, max_version=up)
            for p, lo, up in profiles
        ],
    )


def plugin(name: str, *vifs: hi.HostVIFInfo) -> hi.HostPluginInfo:
    return hi.HostPluginInfo(plugin_name=name, vif_info=list(vifs))


def sample() -> hi.HostInfo:
    """ovs (VIFOpenVSwitch with a port profile, VIFVHostUser from 1.1) and linux_bridge."""
    ovs = plugin(
        "ovs",
        vif("VIFOpenVSwitch", "1.0", "1.0", ("VIFPortProfileOpenVSwitch", "1.0", "1.4")),
        vif("VIFVHostUser", "1.1", "1.1"),
    )
    bridge = plugin("linux_bridge", vif("VIFBridge", "1.0", "1.0"))
    return hostinfo.build_host_info([ovs, bridge])


def vif_infos(primitive: dict[str, Any]) -> list[dict[str, Any]]:
    """The HostVIFInfo primitives inside a HostInfo primitive, plugin by plugin."""
    return [
        vif_info
        for plugin_info in primitive[base.KEY_DATA]["plugin_info"]
        for vif_info in plugin_info[base.KEY_DATA]["vif_info"]
    ]
