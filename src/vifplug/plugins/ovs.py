"""The ``ovs`` plugin: VIFOpenVSwitch (tap on an OVS bridge), VIFBridge
(os-vif's hybrid plug: per-VIF linux bridge, veth pair into OVS) and
VIFVHostUser (an OVS-DPDK vhost-user port; no kernel device).

The port profile means what os-vif means by it: ``interface_id`` is the
``iface-id``; ``datapath_type`` chooses the datapath of a bridge we create;
``create_port`` / ``create_tap`` say whether vifplug makes the OVS port and
the tap.  Where the profile leaves them unset, vifplug makes both, so that the
VIF is ready to carry frames when plug returns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging

from vifplug import exceptions, netdev
from vifplug.objects import instance_info as ii
from vifplug.objects import vif as vifs
from vifplug.ovsdb import ops
from vifplug.plugins import base
from vifplug.records import Allocation, LeftAlone, Placement, VirtualPort

LOG = logging.getLogger(__name__)

OVS_PROFILE = ("VIFPortProfileOpenVSwitch", "1.0", "1.4")


def _profile_flag(profile: vifs.VIFPortProfileOpenVSwitch | None, field: str) -> bool | None:
    """True/False when the profile sets the field, None when it leaves it open."""
    if profile is None or field not in profile.fields or not profile.obj_attr_is_set(field):
        return None
    return bool(getattr(profile, field))


class OvsPlugin(base.PluginBase):
    NAME = "ovs"
    NETWORK_TYPE = "ovs"
    # A new tap is made while the intent is written, and kept only once it is
    # durable (netdev.ensure_tap's before_keeping); nothing else is changed
    # before the intent is.
    OVERLAPS_INTENT = True
    RANGES = (
        base.VersionRange("VIFOpenVSwitch", "1.0", "1.0", (OVS_PROFILE,)),
        base.VersionRange("VIFBridge", "1.0", "1.0", (OVS_PROFILE,)),
        base.VersionRange("VIFVHostUser", "1.0", "1.1", (OVS_PROFILE,)),
    )

    # -- planning (pure) ---------------------------------------------------------
    def _profile(self, vif: vifs.VIFBase) -> vifs.VIFPortProfileOpenVSwitch:
        """The VIF's ``VIFPortProfileOpenVSwitch``.  Mandatory, as in os-vif's
        ovs plugin, which refuses every one of its VIFs without it."""
        if not vif.obj_attr_is_set("port_profile") or vif.port_profile is None:
            raise exceptions.MissingPortProfile(
                plugin=self.NAME, profile=OVS_PROFILE[0], obj_name=vif.obj_name(), vif_id=vif.id
            )
        profile = vif.port_profile
        # Exactly this object: its subclasses (fast path, representor) need
        # what this plugin does not do.
        if profile.obj_name() != OVS_PROFILE[0] or not isinstance(
            profile, vifs.VIFPortProfileOpenVSwitch
        ):
            raise exceptions.UnsupportedPortProfile(
                plugin=self.NAME, profile=profile.obj_name(), obj_name=vif.obj_name()
            )
        return profile

    def plan(
        self, vif: vifs.VIFBase, instance: ii.InstanceInfo, placement: Placement
    ) -> Allocation:
        profile = self._profile(vif)
        assert placement.bridge is not None  # placement resolves it for OVS plugins
        on_bridge = Allocation(
            plugin=self.NAME,
            device="",
            bridge=placement.bridge,
            bridge_id=placement.bridge_id,
            bridge_hwaddr=placement.bridge_hwaddr,
            virtualport=self._virtualport(profile, vif),
        )
        if isinstance(vif, vifs.VIFBridge):
            return self._plan_hybrid(vif, profile, on_bridge)
        if isinstance(vif, vifs.VIFVHostUser):
            return self._plan_vhostuser(vif, on_bridge)
        tap = self.device_name(vif)
        create_tap = _profile_flag(profile, "create_tap")
        return dataclasses.replace(
            on_bridge,
            device=tap,
            port=tap,
            created_devices=(tap,) if create_tap is not False else (),
            created_port=_profile_flag(profile, "create_port") is not False,
        )

    def _plan_hybrid(
        self, vif: vifs.VIFBridge, profile: vifs.VIFPortProfileOpenVSwitch | None, plan: Allocation
    ) -> Allocation:
        """os-vif's hybrid plug: a linux bridge per VIF holding the tap, joined
        to OVS by a veth pair whose OVS end is the port."""
        s = self.ctx.netdev
        qbr = (
            str(vif.bridge_name)
            if vif.obj_attr_is_set("bridge_name") and vif.bridge_name
            else netdev.derive_name(s.hybrid_bridge_prefix, vif.id)
        )
        netdev.validate_name(qbr)
        qvb = netdev.derive_name(s.hybrid_veth_bridge_prefix, vif.id)
        qvo = netdev.derive_name(s.hybrid_veth_ovs_prefix, vif.id)
        tap = self.device_name(vif)
        with_tap = (tap,) if _profile_flag(profile, "create_tap") is not False else ()
        return dataclasses.replace(
            plan,
            device=tap,
            port=qvo,
            created_devices=(qbr, qvb, qvo, *with_tap),
            created_port=True,
        )

    def _plan_vhostuser(self, vif: vifs.VIFVHostUser, plan: Allocation) -> Allocation:
        """As os-vif: QEMU as client means OVS serves the socket
        (``dpdkvhostuser``); QEMU as server means OVS connects to ``path``
        (``dpdkvhostuserclient``).  The bridge defaults to the netdev datapath."""
        port = netdev.derive_name(self.ctx.netdev.vhostuser_prefix, vif.id)
        mode = str(vif.mode) if vif.obj_attr_is_set("mode") else "server"
        vp = dict(plan.virtualport or {})
        vp.setdefault("datapath_type", "netdev")
        if mode == "client":
            vp["iface_type"] = "dpdkvhostuser"
        else:
            if not vif.obj_attr_is_set("path") or not vif.path:
                raise exceptions.InvalidRequest(
                    reason=f"VIFVHostUser {vif.id} in server mode names no socket path"
                )
            vp["iface_type"] = "dpdkvhostuserclient"
            vp["vhost_server_path"] = str(vif.path)
        return dataclasses.replace(plan, device=port, port=port, created_port=True, virtualport=vp)

    @staticmethod
    def _virtualport(
        profile: vifs.VIFPortProfileOpenVSwitch | None, vif: vifs.VIFBase
    ) -> VirtualPort:
        iface_id = vif.id
        if profile is not None and profile.obj_attr_is_set("interface_id") and profile.interface_id:
            iface_id = str(profile.interface_id)
        vp: VirtualPort = {"type": "openvswitch", "interface_id": str(iface_id)}
        if profile is not None:
            for field in ("profile_id", "datapath_type", "multiqueue"):
                if field in profile.fields and profile.obj_attr_is_set(field):
                    vp[field] = getattr(profile, field)
        return vp

    # -- doing -----------------------------------------------------------------------
    def _external_ids(
        self, vif: vifs.VIFBase, instance: ii.InstanceInfo, alloc: Allocation
    ) -> dict[str, str]:
        ids = {
            "iface-id": str((alloc.virtualport or {}).get("interface_id", vif.id)),
            "vm-id": str(instance.uuid),
            "vm-uuid": str(instance.uuid),
            base.KEY_VIF_ID: str(vif.id),
            base.KEY_OWNER: self.ctx.owner,
        }
        mac = base.address(vif)
        if mac:
            ids["attached-mac"] = mac
        return ids

    def _bridge_spec(self, alloc: Allocation) -> ops.BridgeSpec:
        """The bridge to ensure; a configured network's bridge carries its
        ``bridge-id`` and ``hwaddr`` (IntegrationGuide)."""
        datapath = (alloc.virtualport or {}).get("datapath_type") or self.ctx.ovs.datapath_type
        assert alloc.bridge is not None
        return ops.BridgeSpec(
            name=alloc.bridge,
            datapath_type=datapath,
            bridge_id=alloc.bridge_id,
            hwaddr=alloc.bridge_hwaddr,
        )

    @staticmethod
    def _policing(alloc: Allocation) -> tuple[int | None, int | None]:
        """libvirt's outbound (from the VM, kilobytes) is OVS ingress policing
        (into the switch, kilobits)."""
        bw = alloc.bandwidth
        if bw is None or bw.outbound_average is None:
            return None, None
        burst = bw.outbound_burst if bw.outbound_burst is not None else 0
        return bw.outbound_average * 8, burst * 8

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
        made: list[str] = []
        port_was_there = plan.port is not None and self.ctx.ovsdb.interface(plan.port) is not None
        submitted = False
        try:
            # Announce the port write before the devices are made, so that a
            # burst of plugs is committed to OVSDB as one transaction.
            with self.ctx.ovsdb.expecting():
                if isinstance(vif, vifs.VIFBridge):
                    intent.wait()
                    self._plug_hybrid_devices(vif, plan, made)
                elif plan.device in plan.created_devices:
                    multiqueue = bool((plan.virtualport or {}).get("multiqueue"))
                    _, created = netdev.ensure_tap(
                        self.tap_spec(vif, plan.device, multiqueue), before_keeping=intent.wait
                    )
                    if created:
                        made.append(plan.device)
                intent.wait()  # before the port, however the device came
                future = self.ctx.ovsdb.submit(
                    self._port_op(vif, instance, plan, iface_status, exclusive)
                )
                submitted = True
            written = self.ctx.ovsdb.result(future)
            demoted: list[str] = written if isinstance(written, list) else []
        except BaseException:
            self._rollback(
                plan, made, remove_port=submitted and not port_was_there, vif_id=str(vif.id)
            )
            raise
        return base.PlugOutcome(allocation=plan, demoted=tuple(demoted))

    def _port_op(
        self,
        vif: vifs.VIFBase,
        instance: ii.InstanceInfo,
        plan: Allocation,
        iface_status: str | None,
        exclusive: bool,
    ) -> ops.Op:
        """The one OVSDB write of a plug: the port with its Interface keys (and
        the bridge, if missing), or only the bridge when libvirt makes the port."""
        if not plan.created_port:
            return ops.ensure_bridge_op(self._bridge_spec(plan))
        assert plan.port is not None and plan.bridge is not None
        vp = plan.virtualport or {}
        options = (
            {"vhost-server-path": vp["vhost_server_path"]} if vp.get("vhost_server_path") else {}
        )
        rate, burst = self._policing(plan)
        # A vhost-user port has no kernel device whose MTU we set: OVS sets it
        # from mtu_request, as os-vif asks.
        mtu = self.mtu(vif) if str(vp.get("iface_type", "")).startswith("dpdkvhostuser") else None
        spec = ops.PortSpec(
            bridge=plan.bridge,
            name=plan.port,
            iface_type=str(vp.get("iface_type", "")),
            options=options,
            external_ids=self._external_ids(vif, instance, plan),
            iface_status=iface_status,
            exclusive=exclusive,
            require_ids=self.marks(str(vif.id)),
            ingress_policing_rate=rate,
            ingress_policing_burst=burst,
            mtu_request=mtu,
            iface_id_rule=self.ctx.ovs.inactive_iface_id,
            # The port's device is one we make (a tap, the hybrid plug's veth
            # end): it is gone after a reboot, and so should the port be.
            transient=plan.port in plan.created_devices,
        )
        return ops.ensure_port_op(spec, bridge=self._bridge_spec(plan))

    def _rollback(
        self, plan: Allocation, made: list[str], *, remove_port: bool, vif_id: str
    ) -> None:
        """Undo what a failed plug made: the port if this call wrote it (a
        timed-out transaction may still commit later; the removal is queued
        behind it), then the devices this call created, so neither outlives
        the other.  A port that was there before (a repeated plug) stays."""
        if remove_port and plan.created_port and plan.port:
            with contextlib.suppress(Exception):
                self.ctx.ovsdb.transact(
                    ops.remove_port_op(plan.port, require_ids=self.marks(vif_id))
                )
        if made:
            with contextlib.suppress(Exception):
                self.ctx.deleter.delete(made)

    def _plug_hybrid_devices(self, vif: vifs.VIFBridge, plan: Allocation, made: list[str]) -> None:
        qbr, qvb, qvo = plan.created_devices[:3]
        group = self.ctx.netdev.link_group
        mtu = self.mtu(vif)
        _, created = netdev.ensure_bridge(netdev.BridgeSpec(name=qbr, mtu=mtu, link_group=group))
        if created:
            made.append(qbr)
        _, created = netdev.ensure_veth(
            netdev.VethSpec(name=qvb, peer=qvo, mtu=mtu, link_group=group)
        )
        if created:
            made.append(qvb)
        netdev.set_master(qvb, qbr)
        if plan.device in plan.created_devices:
            _, created = netdev.ensure_tap(self.tap_spec(vif, plan.device, multiqueue=False))
            if created:
                made.append(plan.device)
            netdev.set_master(plan.device, qbr)

    def unplug(self, allocation: Allocation, vif_id: str) -> tuple[LeftAlone, ...]:
        """The port, if it still carries this VIF's marks, then the devices.
        A port of that name without them is someone else's: it stays, and
        is reported with what the deleter left."""
        left: list[LeftAlone] = []
        if allocation.created_port and allocation.port:
            marks = self.marks(vif_id)
            removed = self.ctx.ovsdb.transact(
                ops.remove_port_op(allocation.port, require_ids=marks)
            )
            iface = None if removed else self.ctx.ovsdb.interface(allocation.port)
            if iface is not None and any(iface.external_ids.get(k) != v for k, v in marks.items()):
                left.append(
                    LeftAlone(
                        kind="port",
                        name=allocation.port,
                        reason="not made by vifplug (no vifplug marks for this VIF)",
                    )
                )
        return (*left, *super().unplug(allocation, vif_id))
