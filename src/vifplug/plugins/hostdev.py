"""The ``hostdev`` plugin: VIFHostDevice, a PCI function given to the guest.

libvirt has two ways of passing a network function to a guest, and os-vif's
``dev_type`` says which:

* ``generic``: a plain ``<hostdev>``.  Any PCI device; libvirt does not know
  it is a NIC and sets nothing on it.  vifplug checks that the device exists
  and never touches it, its MAC included: in the seed's container case the
  MAC was set beforehand by someone who can reach the PF, which this host's
  vifplug (like libvirt in that container) cannot.
* ``ethernet``: ``<interface type='hostdev'>``.  The device must be an SR-IOV
  VF; its MAC (and VLAN, when the VIF's network has one) is set through its
  PF before the hypervisor takes the VF, so that the guest sees the VIF's
  MAC (the one the persistent member of a failover pair also has).  The VF's
  previous MAC and VLAN are read when the plan is made, recorded with the
  intent, and put back on unplug, so a crash in between still restores them.
  Not exercised on real hardware here (see ``netdev.vf``).

Nothing is created: there is no device of vifplug's to delete, and the PCI
address is the VIF's device, so two VIFs never take the same function.
"""

from __future__ import annotations

from vifplug import exceptions, netdev
from vifplug.objects import instance_info as ii
from vifplug.objects import vif as vifs
from vifplug.plugins import base
from vifplug.records import Allocation, LeftAlone, Placement

GENERIC, ETHERNET = "generic", "ethernet"


class HostdevPlugin(base.PluginBase):
    NAME = "hostdev"
    NETWORK_TYPE = None
    # os-vif's VIFHostDevice has one version, 1.0; its port profile is unused.
    RANGES = (base.VersionRange("VIFHostDevice", "1.0", "1.0"),)

    def plan(
        self, vif: vifs.VIFBase, instance: ii.InstanceInfo, placement: Placement
    ) -> Allocation:
        assert isinstance(vif, vifs.VIFHostDevice)  # the only object in RANGES
        if not vif.obj_attr_is_set("dev_address") or not vif.dev_address:
            raise exceptions.InvalidRequest(reason=f"VIFHostDevice {vif.id} names no dev_address")
        sysfs = self.ctx.netdev.sysfs_root
        address = netdev.normalize_pci(str(vif.dev_address))
        if not netdev.pci_device_exists(address, sysfs=sysfs):
            raise exceptions.PhysicalDeviceNotFound(device=address, vif_id=vif.id)
        dev_type = str(vif.dev_type) if vif.obj_attr_is_set("dev_type") else GENERIC
        if dev_type == GENERIC:
            return Allocation(plugin=self.NAME, device=address, mode=GENERIC)
        return self._plan_vf(vif, address)

    def _plan_vf(self, vif: vifs.VIFHostDevice, address: str) -> Allocation:
        """An ``ethernet`` device: find its PF and remember what the VF has now."""
        mac = base.address(vif)
        if mac is None:
            raise exceptions.InvalidRequest(
                reason=f"VIFHostDevice {vif.id} of dev_type ethernet has no MAC to give its VF"
            )
        ref = netdev.find_vf(address, sysfs=self.ctx.netdev.sysfs_root)
        if ref is None:
            raise exceptions.InvalidRequest(
                reason=f"PCI device {address} of VIF {vif.id} is not an SR-IOV VF whose PF "
                "has a network device here, which dev_type ethernet needs"
            )
        before = netdev.get_vf(ref.pf, ref.index)
        return Allocation(
            plugin=self.NAME,
            device=address,
            mode=ETHERNET,
            pool_device=ref.pf,
            vf_index=ref.index,
            vlan=_vlan(vif),
            previous_mac=before.mac if before else None,
            previous_vlan=before.vlan if before else None,
        )

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
        if plan.mode == ETHERNET:
            assert plan.pool_device is not None and plan.vf_index is not None
            mac = base.address(vif)
            assert mac is not None  # plan checked it
            netdev.set_vf(plan.pool_device, plan.vf_index, mac, plan.vlan or 0)
        return base.PlugOutcome(allocation=plan)

    def unplug(self, allocation: Allocation, vif_id: str) -> tuple[LeftAlone, ...]:
        """Put the VF's MAC and VLAN back as they were; a generic device was
        never touched."""
        if allocation.mode != ETHERNET or allocation.previous_mac is None:
            return ()
        assert allocation.pool_device is not None and allocation.vf_index is not None
        try:
            netdev.set_vf(
                allocation.pool_device,
                allocation.vf_index,
                allocation.previous_mac,
                allocation.previous_vlan or 0,
            )
        except exceptions.NetdevError as exc:
            # The PF went away (hot-unplugged, driver reloaded): nothing is
            # left to restore, and the VIF must still be forgettable.
            return (LeftAlone(kind="device", name=allocation.device, reason=exc.message),)
        return ()


def _vlan(vif: vifs.VIFBase) -> int | None:
    network = vif.network if vif.obj_attr_is_set("network") else None
    if network is not None and network.obj_attr_is_set("vlan") and network.vlan:
        return int(network.vlan)
    return None
