"""The ``noop`` plugin, as os-vif's: VIFVHostUser ports that need nothing on the
host (the vhost-user socket is the VM's and its switch's business)."""

from __future__ import annotations

from typing import Any

from vifplug.plugins import base
from vifplug.records import Allocation


class NoopPlugin(base.PluginBase):
    NAME = "noop"
    RANGES = (base.VersionRange("VIFVHostUser", "1.0", "1.1"),)

    def plan(self, vif: Any, instance: Any) -> Allocation:
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
        vif: Any,
        instance: Any,
        plan: Allocation,
        *,
        iface_status: str | None,
        exclusive: bool,
    ) -> base.PlugOutcome:
        return base.PlugOutcome(allocation=plan)
