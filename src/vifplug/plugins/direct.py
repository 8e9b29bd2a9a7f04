"""The ``direct`` plugin: VIFDirect as a macvtap on a physical device.

The parent device is the network device of the VIF's PCI function
(``dev_address``, as os-vif describes it) or, when the VIF's network names a
configured direct network, one from that network's pool (libvirt's logical
network, seed 001), in the pool's forward mode.
"""

from __future__ import annotations

from vifplug import exceptions, netdev
from vifplug.objects import instance_info as ii
from vifplug.objects import vif as vifs
from vifplug.plugins import base
from vifplug.records import Allocation, Placement, VirtualPort


class DirectPlugin(base.PluginBase):
    NAME = "direct"
    NETWORK_TYPE = "direct"
    RANGES = (
        base.VersionRange(
            "VIFDirect",
            "1.0",
            "1.0",
            (
                ("VIFPortProfile8021Qbg", "1.0", "1.1"),
                ("VIFPortProfile8021Qbh", "1.0", "1.1"),
            ),
        ),
    )

    def plan(
        self, vif: vifs.VIFBase, instance: ii.InstanceInfo, placement: Placement
    ) -> Allocation:
        name = self.device_name(vif, prefix="macvtap")
        if placement.network is not None:
            # The pool device is chosen when the intent is recorded, under the
            # pool lock, so two plugs never take the same exclusive device.
            return Allocation(
                plugin=self.NAME,
                device=name,
                network=placement.network,
                mode=placement.mode,
                created_devices=(name,),
                virtualport=self._virtualport(vif),
            )
        assert isinstance(vif, vifs.VIFDirect)  # the only object in RANGES
        if not vif.obj_attr_is_set("dev_address") or not vif.dev_address:
            raise exceptions.InvalidRequest(
                reason=f"VIFDirect {vif.id} names no dev_address and no configured network"
            )
        parent = netdev.name_for_pci(str(vif.dev_address), sysfs=self.ctx.netdev.sysfs_root)
        if parent is None:
            raise exceptions.PhysicalDeviceNotFound(device=str(vif.dev_address), vif_id=vif.id)
        mode = str(vif.mode) if vif.obj_attr_is_set("mode") else "vepa"
        return Allocation(
            plugin=self.NAME,
            device=name,
            pool_device=parent,
            mode=mode,
            created_devices=(name,),
            virtualport=self._virtualport(vif),
        )

    @staticmethod
    def _virtualport(vif: vifs.VIFBase) -> VirtualPort | None:
        if not vif.obj_attr_is_set("port_profile") or vif.port_profile is None:
            return None
        profile = vif.port_profile
        vp: VirtualPort = {"type": profile.obj_name()}
        for field in profile.fields:
            if field != "datapath_offload" and profile.obj_attr_is_set(field):
                vp[field] = str(getattr(profile, field))
        return vp

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
        if plan.pool_device is None:
            raise exceptions.InvalidRequest(reason=f"VIF {vif.id} has no parent device")
        _, created = netdev.ensure_macvtap(
            netdev.MacvtapSpec(
                name=plan.device,
                parent=plan.pool_device,
                mode=netdev.normalize_mode(plan.mode or "vepa"),  # type: ignore[arg-type]
                mac=base.address(vif),
                mtu=self.mtu(vif),
                link_group=self.ctx.netdev.link_group,
            ),
            vif_id=str(vif.id),
        )
        try:
            bw = plan.bandwidth
            if bw is not None and not bw.is_empty():
                # libvirt's inbound/outbound are the VM's view; for a macvtap
                # they map onto the device's directions swapped (see netdev).
                limits = netdev.Bandwidth.for_vm(
                    "macvtap",
                    inbound_kbps=bw.inbound_average,
                    inbound_burst_kb=bw.inbound_burst,
                    outbound_kbps=bw.outbound_average,
                    outbound_burst_kb=bw.outbound_burst,
                )
                netdev.set_bandwidth(
                    plan.device,
                    ingress_kbps=limits.ingress_kbps,
                    ingress_burst_kb=limits.ingress_burst_kb,
                    egress_kbps=limits.egress_kbps,
                    egress_burst_kb=limits.egress_burst_kb,
                )
        except BaseException:
            if created:
                self.ctx.deleter.delete([plan.device])
            raise
        return base.PlugOutcome(allocation=plan)
