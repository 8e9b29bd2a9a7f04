"""Placement: what the logical networks decide for a VIF, in one place.

The operator's network definitions (``networks``) say which bridge a network
is on, which devices its pool holds and what its portgroups add.  This module
is the only reader of them: it matches the network a VIF names with the
plugin's kind of network, resolves the OVS bridge (and checks it is allowed),
merges the portgroup into the plan, and chooses a device from a pool.
Plugins receive the resolved ``records.Placement`` and hold no networks.

The current definitions are one immutable ``Networks`` value; a reload swaps
it in one assignment (``Placer.reload``), so a plug sees either the old
definitions or the new ones, never a mixture.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection, Iterable, Mapping

from vifplug import conf, exceptions, netdev
from vifplug.objects import vif as vifs
from vifplug.plugging.networks import NetworkDef
from vifplug.records import Allocation, JsonObject, Placement, VirtualPort

LOG = logging.getLogger(__name__)

#: Who holds which device of a pool: device name -> VIF ids.
PoolHolders = Mapping[str, Iterable[str]]


@dataclasses.dataclass(frozen=True)
class Networks:
    """The configured networks at one moment; replaced whole on reload."""

    defs: Mapping[str, NetworkDef]

    def by_bridge(self, bridge: str) -> NetworkDef | None:
        for d in self.defs.values():
            if d.bridge == bridge:
                return d
        return None

    def bridges(self) -> frozenset[str]:
        return frozenset(d.bridge for d in self.defs.values() if d.bridge)

    def named_by(self, vif: vifs.VIFBase) -> NetworkDef | None:
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


class Placer:
    """Resolves placements against the current networks (see the module)."""

    def __init__(self, ovs: conf.OvsSettings, defs: Mapping[str, NetworkDef]) -> None:
        self._ovs = ovs
        self._networks = Networks(dict(defs))

    @property
    def networks(self) -> Networks:
        return self._networks

    def allowed_bridges(self) -> frozenset[str]:
        """``[ovs] allowed_bridges``, else the integration bridge and the
        bridges of the configured networks."""
        if self._ovs.allowed_bridges:
            return frozenset(self._ovs.allowed_bridges)
        return frozenset({self._ovs.integration_bridge}) | self._networks.bridges()

    # -- placing a VIF ------------------------------------------------------------
    def place(self, vif: vifs.VIFBase, *, plugin: str, network_type: str | None) -> Placement:
        """Where ``vif`` goes for ``plugin``, whose kind of network is
        ``network_type`` (``"ovs"``, ``"direct"``, or None for plugins that use
        no configured network).

        Raises ``InvalidRequest`` when the VIF names a network of another type,
        ``BridgeNotAllowed`` or ``InvalidDeviceName`` for its bridge."""
        networks = self._networks
        defined = networks.named_by(vif) if network_type is not None else None
        if defined is not None and defined.type != network_type:
            raise exceptions.InvalidRequest(
                reason=f"VIF {vif.id} names network {defined.name}, a {defined.type} "
                f"network, which plugin {plugin} cannot use"
            )
        if network_type != "ovs":
            return Placement(
                network=defined.name if defined else None,
                mode=defined.mode if defined else None,
            )
        bridge = self._bridge(vif, defined)
        owner = networks.by_bridge(bridge)
        return Placement(
            network=defined.name if defined else None,
            bridge=bridge,
            bridge_id=owner.bridge_id if owner else None,
            bridge_hwaddr=owner.hwaddr if owner else None,
        )

    def _bridge(self, vif: vifs.VIFBase, defined: NetworkDef | None) -> str:
        """The network's bridge, else the one the VIF's Network names, else the
        integration bridge; it must be one of the allowed bridges."""
        bridge = defined.bridge if defined is not None else None
        network = vif.network if vif.obj_attr_is_set("network") else None
        if bridge is None and network is not None and network.obj_attr_is_set("bridge"):
            bridge = str(network.bridge) if network.bridge else None
        bridge = bridge or self._ovs.integration_bridge
        netdev.validate_name(bridge)
        if bridge not in self.allowed_bridges():
            raise exceptions.BridgeNotAllowed(vif_id=vif.id, bridge=bridge)
        return bridge

    def with_portgroup(
        self, plan: Allocation, placement: Placement, portgroup: str | None, *, vif_id: str
    ) -> Allocation:
        """The plan with the network and its portgroup's virtual port profile and
        bandwidth (the VIF's own profile wins where it says something, as
        libvirt merges interface over portgroup)."""
        if placement.network is None:
            if portgroup is not None:
                raise exceptions.InvalidRequest(
                    reason=f"portgroup {portgroup} given but VIF {vif_id} names no "
                    f"configured network"
                )
            return plan
        d = self._networks.defs.get(placement.network)
        if d is None:
            raise exceptions.NetworkNotFound(vif_id=vif_id, network=placement.network)
        name = portgroup or d.default_portgroup
        if name is None:
            return dataclasses.replace(plan, network=d.name)
        pg = d.portgroups.get(name)
        if pg is None:
            raise exceptions.InvalidRequest(reason=f"network {d.name} has no portgroup {name}")
        vp: VirtualPort = dict(plan.virtualport or {})
        if pg.virtualport:
            merged = dict(pg.virtualport)
            merged.update({k: v for k, v in vp.items() if v is not None})
            vp = merged
        return dataclasses.replace(
            plan, network=d.name, portgroup=name, bandwidth=pg.bandwidth, virtualport=vp or None
        )

    # -- pools ------------------------------------------------------------------------
    def needs_pool_device(self, plan: Allocation) -> bool:
        """Whether the plan still needs a device chosen from a direct network's pool."""
        if plan.network is None or plan.pool_device is not None:
            return False
        d = self._networks.defs.get(plan.network)
        return d is not None and d.type == "direct"

    def choose_device(self, plan: Allocation, holders: PoolHolders, *, vif_id: str) -> str:
        """A device from the plan's pool: the first free one for the modes that
        need a device alone, the least used one (first on a tie) otherwise."""
        network = plan.network or ""
        d = self._networks.defs.get(network)
        if d is None:
            raise exceptions.NetworkNotFound(vif_id=vif_id, network=network)
        counts = {dev: len(list(holders.get(dev, ()))) for dev in d.devices}
        if d.exclusive(plan.virtualport):
            for dev in d.devices:
                if counts[dev] == 0:
                    return dev
            raise exceptions.PoolExhausted(network=network, vif_id=vif_id, mode=d.mode)
        if not d.devices:
            raise exceptions.PoolExhausted(network=network, vif_id=vif_id, mode=d.mode)
        return min(d.devices, key=lambda dev: counts[dev])

    # -- reload and view -----------------------------------------------------------------
    def reload(self, defs: Mapping[str, NetworkDef], *, in_use: Collection[str]) -> list[str]:
        """Swap in new definitions without touching plugged VIFs.

        A network that still has VIFs (``in_use``) cannot be removed: its old
        definition is kept, and its name returned (and logged) for the operator."""
        new = dict(defs)
        refused = sorted(name for name in in_use if name not in new and name in self._networks.defs)
        for name in refused:
            new[name] = self._networks.defs[name]
            LOG.error(
                "network %s was removed from the configuration but still has VIFs; "
                "keeping its definition until they are unplugged",
                name,
            )
        self._networks = Networks(new)
        return refused

    def describe(self, holders: Mapping[str, Mapping[str, list[str]]]) -> list[JsonObject]:
        """The networks for ``GET /v1/networks``: pools and who holds what."""
        return [
            _describe(d, holders.get(d.name, {}))
            for d in sorted(self._networks.defs.values(), key=lambda n: n.name)
        ]


def _describe(d: NetworkDef, held: Mapping[str, list[str]]) -> JsonObject:
    return {
        "name": d.name,
        "type": d.type,
        "bridge": d.bridge,
        "mode": d.mode,
        "bridge_id": d.bridge_id,
        "devices": [{"device": dev, "vifs": sorted(held.get(dev, []))} for dev in d.devices],
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
