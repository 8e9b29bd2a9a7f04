"""The ``noop`` plugin, as os-vif's: VIFVHostUser ports that need nothing on the
host (the vhost-user socket is the VM's and its switch's business)."""

from __future__ import annotations

from vifplug.objects import instance_info as ii
from vifplug.objects import vif as vifs
from vifplug.plugins import base
from vifplug.records import Allocation, Placement


class NoopPlugin(base.PluginBase):
    NAME = "noop"
    RANGES = (base.VersionRange("VIFVHostUser", "1.0", "1.1"),)

    def plan(
        self, vif: vifs.VIFBase, instance: ii.InstanceInfo, placement: Placement
    ) -> Allocation:
        assert isinstance(vif, vifs.VIFVHostUser)  # the only object in RANGES
        name = (
            str(vif.vif_name)
            if vif.obj_attr_is_set("vif_name") and vif.vif_name
            else str(vif.path)
            if vif.obj_attr_is_set("path")
            else str(vif.id)
        )
        return Allocation(plugin=self.NAME, device=name)

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
        return base.PlugOutcome(allocation=plan)
