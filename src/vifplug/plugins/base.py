"""The plugin contract, after os-vif's ``PluginBase``, made crash-safe.

os-vif's plugin is three methods (describe, plug, unplug).  vifplug splits
plug in two: ``plan`` decides every name, bridge and device without touching
the system (so the caller's mistakes are refused before anything changes, and
so the plan can be recorded as intent before the system is changed), then
``plug`` makes it so and reports what it actually did.  ``unplug`` takes that
record, not the VIF, so that a restarted daemon can undo exactly what an
earlier one made.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from vifplug import conf, exceptions, netdev, objects
from vifplug.ovsdb import ops
from vifplug.records import Allocation

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


@dataclasses.dataclass
class PluginContext:
    """What a plugin may use: the system layers and the typed settings.

    ``ovsdb`` is a ``vifplug.ovsdb.connection.Connection`` and ``deleter`` a
    ``vifplug.netdev.Deleter``; ``owner`` is the value vifplug writes into
    ``vifplug-owner`` so two daemons on one host never take each other's ports.
    ``pool`` chooses a device from a network's pool (see ``state``).
    """

    ovs: conf.OvsSettings
    netdev: conf.NetdevSettings
    ovsdb: Any
    deleter: Any
    owner: str
    allowed_bridges: Callable[[], frozenset[str]]
    networks: Any = None


class PluginBase(abc.ABC):
    """One way of connecting a VIF to the host's network."""

    NAME: ClassVar[str]
    RANGES: ClassVar[Sequence[VersionRange]] = ()

    def __init__(self, ctx: PluginContext) -> None:
        self.ctx = ctx

    def describe(self) -> Any:
        """This plugin as a ``HostPluginInfo``: the VIF objects it consumes."""
        host_info = objects.host_info
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
    def plan(self, vif: Any, instance: Any) -> Allocation:
        """Decide names and targets; raise a caller error if the VIF cannot be
        plugged here.  Must not change the system."""

    @abc.abstractmethod
    def plug(
        self,
        vif: Any,
        instance: Any,
        plan: Allocation,
        *,
        iface_status: str | None,
        exclusive: bool,
    ) -> PlugOutcome:
        """Make ``plan`` real.  Idempotent: an existing matching device or port
        is adopted.  On failure, whatever this call created is removed before
        the exception propagates (never a tap without its port, nor a port
        without its tap)."""

    def unplug(self, allocation: Allocation, vif_id: str) -> None:
        """Remove what ``allocation`` says vifplug created for VIF ``vif_id``;
        idempotent.

        The default deletes the created devices (in one batch with whatever
        other unplugs are deleting at the same moment)."""
        if allocation.created_devices:
            self.ctx.deleter.delete(list(allocation.created_devices))

    def wait_port(self, allocation: Allocation) -> str | None:
        """The OVS interface whose ofport says the VIF is ready, if any."""
        if allocation.bridge and allocation.created_port:
            return allocation.port
        return None

    def wait_ready(self, allocation: Allocation, mode: str, timeout: float) -> bool:
        """Block until the VIF's port has an ofport (``ofport``) or OVN bound it
        (``ovn-installed``); False on timeout.  Raises ``InterfaceError`` when
        ovs-vswitchd reports it could not attach the device."""
        port = self.wait_port(allocation)
        if port is None or mode == "none":
            return True
        # A device libvirt will create later (create_tap=False) is missing for
        # now: ovs-vswitchd's "No such device" is not a failure then.
        ours = allocation.device in allocation.created_devices

        def ready(view: Any) -> bool:
            if view.failed and ours:
                return True
            if mode == "ovn-installed":
                return bool(view.external_ids.get("ovn-installed") == "true")
            return bool(view.has_ofport)

        view = self.ctx.ovsdb.wait_interface(port, ready, timeout)
        if view is None:
            return False
        if view.failed and ours:
            raise exceptions.InterfaceError(
                device=port, bridge=allocation.bridge, reason=view.error or "ofport is -1"
            )
        return True

    def set_status(self, allocation: Allocation, status: str, *, exclusive: bool) -> list[str]:
        """Set iface-status on the VIF's interface; returns the names of the
        interfaces this made inactive (one transaction)."""
        port = self.wait_port(allocation)
        if port is None:
            return []
        result: list[str] = self.ctx.ovsdb.transact(
            ops.set_iface_status_op(port, status, exclusive=exclusive)
        )
        return result

    def ofport(self, allocation: Allocation) -> int | None:
        port = self.wait_port(allocation)
        if port is None:
            return None
        view = self.ctx.ovsdb.interface(port)
        return view.ofport if view is not None else None

    # -- helpers shared by the plugins ------------------------------------------
    def device_name(self, vif: Any, prefix: str | None = None) -> str:
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

    def check_bridge(self, vif: Any, bridge: str) -> None:
        if bridge not in self.ctx.allowed_bridges():
            raise exceptions.BridgeNotAllowed(vif_id=vif.id, bridge=bridge)

    def mtu(self, vif: Any) -> int | None:
        network = vif.network if vif.obj_attr_is_set("network") else None
        if network is not None and network.obj_attr_is_set("mtu") and network.mtu:
            return int(network.mtu)
        return self.ctx.netdev.default_mtu

    @staticmethod
    def address(vif: Any) -> str | None:
        return str(vif.address) if vif.obj_attr_is_set("address") and vif.address else None

    def check_address(self, vif: Any) -> None:
        """A MAC the kernel would refuse (multicast, all zeros) is the caller's
        mistake: refuse it while planning, before anything is changed."""
        mac = self.address(vif)
        if mac is None:
            return
        first = int(mac.split(":")[0], 16)
        if first & 1 or mac.replace(":", "").strip("0") == "":
            raise exceptions.InvalidRequest(
                reason=f"VIF {vif.id} has MAC {mac}, which is not a unicast address"
            )
