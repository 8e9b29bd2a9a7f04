"""Logical networks (libvirt's ``<network>``, seed 001): bridges, device pools,
portgroups.  Pure logic: which device of a pool a VIF gets, what a portgroup
adds to a plug.  The choice itself is persisted with the VIF's allocation by
the state store, so a restart neither loses nor leaks a pool device.

Configuration: one ``[network:NAME]`` group per network and one
``[portgroup:NETWORK:NAME]`` group per portgroup (see ``conf.NETWORK_OPTS``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from oslo_config import cfg

from vifplug import conf as vconf
from vifplug import exceptions
from vifplug.records import Allocation, Bandwidth, needs_device_alone

LOG = logging.getLogger(__name__)

SHARED_MODES = ("vepa", "bridge", "private")


@dataclasses.dataclass(frozen=True)
class Portgroup:
    name: str
    virtualport: Mapping[str, Any] | None = None
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

    def exclusive(self, virtualport: Mapping[str, Any] | None) -> bool:
        """Whether a VIF with this profile needs a device of this network alone."""
        return needs_device_alone(self.mode, virtualport)


def _portgroup(conf: cfg.ConfigOpts, network: str, name: str) -> Portgroup:
    group = f"portgroup:{network}:{name}"
    conf.register_opts(vconf.PORTGROUP_OPTS, group=group)
    g = conf[group]
    vp: dict[str, Any] | None = None
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


class Networks:
    """The configured networks; replaced as a whole on SIGHUP."""

    def __init__(self, defs: Mapping[str, NetworkDef]) -> None:
        self.defs = dict(defs)
        self._by_bridge = {d.bridge: d for d in self.defs.values() if d.bridge}

    # -- look-ups used by the plugins ------------------------------------------
    def get(self, name: str) -> NetworkDef | None:
        return self.defs.get(name)

    def bridges(self) -> frozenset[str]:
        return frozenset(self._by_bridge)

    def by_bridge(self, bridge: str) -> NetworkDef | None:
        return self._by_bridge.get(bridge)

    def is_direct(self, name: str) -> bool:
        d = self.defs.get(name)
        return d is not None and d.type == "direct"

    def network_of(self, vif: Any) -> NetworkDef | None:
        """The configured network a VIF names, by its Network's label or bridge."""
        if not vif.obj_attr_is_set("network") or vif.network is None:
            return None
        net = vif.network
        for field in ("label", "bridge"):
            if net.obj_attr_is_set(field) and getattr(net, field):
                d = self.defs.get(str(getattr(net, field)))
                if d is not None:
                    return d
        return None

    # -- pools ---------------------------------------------------------------------
    def choose_device(
        self,
        network: str,
        holders: Mapping[str, Iterable[str]],
        *,
        vif_id: str,
        virtualport: Mapping[str, Any] | None = None,
    ) -> str:
        """A device from the pool: the first free one for exclusive modes, the
        least used one (first on a tie, for stable results) otherwise."""
        d = self.defs.get(network)
        if d is None:
            raise exceptions.NetworkNotFound(vif_id=vif_id, network=network)
        counts = {dev: len(list(holders.get(dev, ()))) for dev in d.devices}
        if d.exclusive(virtualport):
            for dev in d.devices:
                if counts[dev] == 0:
                    return dev
            raise exceptions.PoolExhausted(network=network, vif_id=vif_id, mode=d.mode)
        if not d.devices:
            raise exceptions.PoolExhausted(network=network, vif_id=vif_id, mode=d.mode)
        return min(d.devices, key=lambda dev: counts[dev])

    # -- portgroups ----------------------------------------------------------------
    def apply_portgroup(
        self, network: str, portgroup: str | None, plan: Allocation, *, vif_id: str
    ) -> Allocation:
        """The plan with the portgroup's virtual port profile and bandwidth."""
        d = self.defs.get(network)
        if d is None:
            raise exceptions.NetworkNotFound(vif_id=vif_id, network=network)
        name = portgroup or d.default_portgroup
        if name is None:
            return dataclasses.replace(plan, network=network)
        pg = d.portgroups.get(name)
        if pg is None:
            raise exceptions.InvalidRequest(reason=f"network {network} has no portgroup {name}")
        vp = dict(plan.virtualport or {})
        if pg.virtualport:
            # The VIF's own profile wins where it says something (libvirt merges
            # the same way: interface over portgroup).
            merged = dict(pg.virtualport)
            merged.update({k: v for k, v in vp.items() if v is not None})
            vp = merged
        return dataclasses.replace(
            plan, network=network, portgroup=name, bandwidth=pg.bandwidth, virtualport=vp or None
        )

    def describe(self, holders: Mapping[str, Mapping[str, list[str]]]) -> list[dict[str, Any]]:
        """The networks for ``GET /v1/networks``: pools and who holds what."""
        out = []
        for d in sorted(self.defs.values(), key=lambda n: n.name):
            held = holders.get(d.name, {})
            out.append(
                {
                    "name": d.name,
                    "type": d.type,
                    "bridge": d.bridge,
                    "mode": d.mode,
                    "bridge_id": d.bridge_id,
                    "devices": [
                        {"device": dev, "vifs": sorted(held.get(dev, []))} for dev in d.devices
                    ],
                    "portgroups": [
                        {
                            "name": pg.name,
                            "default": pg.name == d.default_portgroup,
                            "virtualport": dict(pg.virtualport) if pg.virtualport else None,
                            "bandwidth": dataclasses.asdict(pg.bandwidth) if pg.bandwidth else None,
                        }
                        for pg in d.portgroups.values()
                    ],
                }
            )
        return out
