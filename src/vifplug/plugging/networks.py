"""Logical network definitions (libvirt's ``<network>``, seed 001): bridges,
device pools, portgroups, as the operator declares them.

This module only reads them from the configuration; what they mean for a VIF
(which bridge, which pool device, what a portgroup adds) is decided in one
place, ``vifplug.plugging.placement``.

Configuration: one ``[network:NAME]`` group per network and one
``[portgroup:NETWORK:NAME]`` group per portgroup (see ``conf.NETWORK_OPTS``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

from oslo_config import cfg

from vifplug import conf as vconf
from vifplug import exceptions
from vifplug.records import Bandwidth, VirtualPort, needs_device_alone

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Portgroup:
    name: str
    virtualport: VirtualPort | None = None
    bandwidth: Bandwidth | None = None


@dataclasses.dataclass(frozen=True)
class NetworkDef:
    name: str
    type: str  # "ovs" or "direct"
    bridge: str | None = None
    bridge_id: str | None = None
    hwaddr: str | None = None
    devices: tuple[str, ...] = ()
    mode: str = "vepa"
    portgroups: Mapping[str, Portgroup] = dataclasses.field(default_factory=dict)
    default_portgroup: str | None = None

    def exclusive(self, virtualport: VirtualPort | None) -> bool:
        """Whether a VIF with this profile needs a device of this network alone."""
        return needs_device_alone(self.mode, virtualport)


def _portgroup(conf: cfg.ConfigOpts, network: str, name: str) -> Portgroup:
    group = f"portgroup:{network}:{name}"
    conf.register_opts(vconf.PORTGROUP_OPTS, group=group)
    g = conf[group]
    vp: VirtualPort | None = None
    if g.virtualport_type == "802.1Qbg":
        vp = {
            "type": "802.1Qbg",
            "manager_id": g.manager_id,
            "type_id": g.type_id,
            "type_id_version": g.type_id_version,
            "instance_id": g.instance_id,
        }
    elif g.virtualport_type == "802.1Qbh":
        vp = {"type": "802.1Qbh", "profile_id": g.profile_id}
    elif g.virtualport_type == "openvswitch":
        vp = {"type": "openvswitch", "profile_id": g.profile_id}
    bw = Bandwidth(
        inbound_average=g.inbound_average,
        inbound_burst=g.inbound_burst,
        outbound_average=g.outbound_average,
        outbound_burst=g.outbound_burst,
    )
    return Portgroup(name=name, virtualport=vp, bandwidth=None if bw.is_empty() else bw)


def load(conf: cfg.ConfigOpts) -> dict[str, NetworkDef]:
    """Read every ``[network:NAME]`` group of the parsed configuration files."""
    out: dict[str, NetworkDef] = {}
    for section in conf.list_all_sections():
        if not section.startswith("network:"):
            continue
        name = section.split(":", 1)[1]
        conf.register_opts(vconf.NETWORK_OPTS, group=section)
        g = conf[section]
        pgs = {pg: _portgroup(conf, name, pg) for pg in g.portgroups}
        if g.default_portgroup and g.default_portgroup not in pgs:
            raise exceptions.InvalidRequest(
                reason=f"network {name}: default_portgroup {g.default_portgroup} "
                f"is not among its portgroups"
            )
        if g.type == "ovs" and not g.bridge:
            raise exceptions.InvalidRequest(reason=f"network {name}: an ovs network needs a bridge")
        if g.type == "direct" and not g.devices:
            raise exceptions.InvalidRequest(
                reason=f"network {name}: a direct network needs devices"
            )
        out[name] = NetworkDef(
            name=name,
            type=g.type,
            bridge=g.bridge,
            bridge_id=g.bridge_id or name,
            hwaddr=g.hwaddr,
            devices=tuple(g.devices),
            mode=g.mode,
            portgroups=pgs,
            default_portgroup=g.default_portgroup,
        )
    return out
