"""The plugin contract, after os-vif's ``PluginBase``, made crash-safe.

os-vif's plugin is three methods (describe, plug, unplug).  vifplug splits
plug in two: ``plan`` decides every name and device without touching the
system (so the caller's mistakes are refused before anything changes, and so
the plan can be recorded as intent before the system is changed), then
``plug`` makes it so and reports what it actually did.  ``unplug`` takes that
record, not the VIF, so that a restarted daemon can undo exactly what an
earlier one made.

Where a VIF goes on the host's logical networks (its OVS bridge, its direct
network and mode) is decided before ``plan`` by ``vifplug.plugging.placement``
and handed in as a ``Placement``; a plugin holds no network definitions.
What happens to a plugged OVS port afterwards (waiting for its ``ofport``,
switching its ``iface-status``) is the plug path's business, not the plugin's.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from typing import ClassVar, Protocol

from vifplug import conf, netdev
from vifplug.netdev import Deleter
from vifplug.objects import host_info
from vifplug.objects import instance_info as ii
from vifplug.objects import vif as vifs
from vifplug.ovsdb import connection
from vifplug.records import Allocation, LeftAlone, Placement

# external_ids keys vifplug keeps for itself (the contract: a ``vifplug-`` prefix).
KEY_VIF_ID = "vifplug-vif-id"
KEY_OWNER = "vifplug-owner"


@dataclasses.dataclass(frozen=True)
class VersionRange:
    obj_name: str
    min_version: str
    max_version: str
    port_profiles: tuple[tuple[str, str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class PlugOutcome:
    allocation: Allocation
    demoted: tuple[str, ...] = ()  # other interfaces made inactive


class Intent(Protocol):
    """The plug's recorded intent, perhaps still on its way to the disk."""

    def wait(self) -> object:
        """Return once the intent is durable; raise why it is not (every call)."""
        ...


class _Durable:
    def wait(self) -> None:
        return None


#: An intent already durable: what every plugin is given unless it
#: declares ``OVERLAPS_INTENT``.
DURABLE: Intent = _Durable()


@dataclasses.dataclass(frozen=True)
class PluginContext:
    """What a plugin may use: the system layers and the typed settings.

    ``owner`` is the value vifplug writes into ``vifplug-owner`` so that two
    daemons on one host never take each other's ports.
    """

    ovs: conf.OvsSettings
    netdev: conf.NetdevSettings
    ovsdb: connection.Connection
    deleter: Deleter
    owner: str


class PluginBase(abc.ABC):
    """One way of connecting a VIF to the host's network."""

    NAME: ClassVar[str]
    RANGES: ClassVar[Sequence[VersionRange]] = ()
    #: The kind of configured network this plugin plugs into (``"ovs"``,
    #: ``"direct"``), or None when it uses none.
    NETWORK_TYPE: ClassVar[str | None] = None
    #: Whether ``plug`` may be given an intent still being written, and waits
    #: for it (``intent.wait()``) before any change that could outlive the
    #: call.  Other plugins are only ever given a durable one.
    OVERLAPS_INTENT: ClassVar[bool] = False

    def __init__(self, ctx: PluginContext) -> None:
        self.ctx = ctx

    def describe(self) -> host_info.HostPluginInfo:
        """This plugin as a ``HostPluginInfo``: the VIF objects it consumes."""
        vif_info = []
        for r in self.RANGES:
            profiles = [
                host_info.HostPortProfileInfo(
                    profile_object_name=name, min_version=lo, max_version=hi
                )
                for name, lo, hi in r.port_profiles
            ]
            vif_info.append(
                host_info.HostVIFInfo(
                    vif_object_name=r.obj_name,
                    min_version=r.min_version,
                    max_version=r.max_version,
                    supported_port_profiles=profiles,
                )
            )
        return host_info.HostPluginInfo(plugin_name=self.NAME, vif_info=vif_info)

    def range_for(self, obj_name: str) -> VersionRange | None:
        for r in self.RANGES:
            if r.obj_name == obj_name:
                return r
        return None

    @abc.abstractmethod
    def plan(
        self, vif: vifs.VIFBase, instance: ii.InstanceInfo, placement: Placement
    ) -> Allocation:
        """Decide names and targets; raise a caller error if the VIF cannot be
        plugged here.  Must not change the system."""

    @abc.abstractmethod
    def plug(
        self,
        vif: vifs.VIFBase,
        instance: ii.InstanceInfo,
        plan: Allocation,
        *,
        iface_status: str | None,
        exclusive: bool,
        intent: Intent = DURABLE,
    ) -> PlugOutcome:
        """Make ``plan`` real.  Idempotent: an existing matching device or port
        is adopted.  On failure, whatever this call created is removed before
        the exception propagates (never a tap without its port, nor a port
        without its tap).  ``intent``: see ``OVERLAPS_INTENT``."""

    def unplug(self, allocation: Allocation, vif_id: str) -> tuple[LeftAlone, ...]:
        """Remove what ``allocation`` says vifplug created for VIF ``vif_id``;
        idempotent.  Returns what carried a recorded name but was not ours,
        and so was left in place.

        The default deletes the created devices (in one batch with whatever
        other unplugs are deleting at the same moment); a device of that
        name outside this daemon's link group was made by someone else
        after ours went, and the deleter leaves it alone."""
        if not allocation.created_devices:
            return ()
        deletion = self.ctx.deleter.delete(list(allocation.created_devices))
        return tuple(
            LeftAlone(kind="device", name=name, reason=why)
            for name, why in deletion.left_alone.items()
        )

    # -- helpers shared by the plugins ------------------------------------------
    def device_name(self, vif: vifs.VIFBase, prefix: str | None = None) -> str:
        """The VIF's device: ``vif_name`` if given, else derived from the id the
        way Nova does (prefix + id, 14 characters)."""
        name = getattr(vif, "vif_name", None) if vif.obj_attr_is_set("vif_name") else None
        if not name:
            name = netdev.derive_name(prefix or self.ctx.netdev.tap_prefix, vif.id)
        netdev.validate_name(name)
        return str(name)

    def marks(self, vif_id: str) -> dict[str, str]:
        """The external_ids that say an OVS interface is this VIF's, made by us."""
        return {KEY_OWNER: self.ctx.owner, KEY_VIF_ID: vif_id}

    def tap_spec(self, vif: vifs.VIFBase, name: str, multiqueue: bool) -> netdev.TapSpec:
        """The tap a VM's interface uses: its MAC and MTU, owned by the
        configured user and group, in this daemon's link group."""
        return netdev.TapSpec(
            name=name,
            mac=address(vif),
            mtu=self.mtu(vif),
            owner=self.ctx.netdev.tap_owner,
            group_owner=self.ctx.netdev.tap_group,
            multiqueue=multiqueue,
            link_group=self.ctx.netdev.link_group,
        )

    def mtu(self, vif: vifs.VIFBase) -> int | None:
        network = vif.network if vif.obj_attr_is_set("network") else None
        if network is not None and network.obj_attr_is_set("mtu") and network.mtu:
            return int(network.mtu)
        return self.ctx.netdev.default_mtu


def address(vif: vifs.VIFBase) -> str | None:
    """The VIF's MAC, or None when it has none."""
    return str(vif.address) if vif.obj_attr_is_set("address") and vif.address else None
