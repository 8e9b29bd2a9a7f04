"""The ``linux_bridge`` plugin: VIFBridge as a tap on a linux bridge, as os-vif's
linux_bridge plugin (which leaves the tap to libvirt) would, with vifplug making
the tap so the VIF is ready when plug returns."""

from __future__ import annotations

from vifplug import exceptions, netdev
from vifplug.objects import instance_info as ii
from vifplug.objects import vif as vifs
from vifplug.plugins import base
from vifplug.records import Allocation, Placement


class LinuxBridgePlugin(base.PluginBase):
    NAME = "linux_bridge"
    RANGES = (base.VersionRange("VIFBridge", "1.0", "1.0"),)

    def plan(
        self, vif: vifs.VIFBase, instance: ii.InstanceInfo, placement: Placement
    ) -> Allocation:
        assert isinstance(vif, vifs.VIFBridge)  # the only object in RANGES
        if vif.obj_attr_is_set("port_profile") and vif.port_profile is not None:
            raise exceptions.UnsupportedPortProfile(
                plugin=self.NAME, profile=vif.port_profile.obj_name(), obj_name=vif.obj_name()
            )
        bridge = (
            str(vif.bridge_name) if vif.obj_attr_is_set("bridge_name") and vif.bridge_name else None
        )
        if not bridge:
            raise exceptions.InvalidRequest(reason=f"VIFBridge {vif.id} names no bridge_name")
        netdev.validate_name(bridge)
        tap = self.device_name(vif)
        return Allocation(plugin=self.NAME, device=tap, port=bridge, created_devices=(tap,))

    def plug(
        self,
        vif: vifs.VIFBase,
        instance: ii.InstanceInfo,
        plan: Allocation,
        *,
        iface_status: str | None,
        exclusive: bool,
        intent: base.Intent = base.DURABLE,
    ) -> base.PlugOutcome:
        group = self.ctx.netdev.link_group
        assert plan.port is not None
        made = []
        try:
            # A linux bridge may be shared by many VIFs: it is not recorded as
            # created and stays in place on unplug, as os-vif leaves it.  One
            # that exists already (the operator's) is used as it is, never
            # put into our link group, so it is never taken for our leak.
            existing = netdev.get_link(plan.port)
            if existing is None:
                netdev.ensure_bridge(
                    netdev.BridgeSpec(name=plan.port, mtu=self.mtu(vif), link_group=group)
                )
            elif existing.kind != "bridge":
                raise exceptions.DeviceInUse(
                    device=plan.port, reason=f"it is a {existing.kind}, not a bridge"
                )
            _, created = netdev.ensure_tap(self.tap_spec(vif, plan.device, multiqueue=False))
            if created:
                made.append(plan.device)
            netdev.set_master(plan.device, plan.port)
        except BaseException:
            if made:
                self.ctx.deleter.delete(made)
            raise
        return base.PlugOutcome(allocation=plan)
