"""The OVS port of a plugged VIF: waiting for it, its iface-status, its ofport.

os-vif's plugin contract ends when the port is made; what the compute
service asks afterwards (answer when ovs-vswitchd gave the port an ofport or
ovn-controller installed it, switch which interface of an iface-id is active,
show the ofport) concerns any allocation with an OVS port, whichever plugin
made it.  The service uses this helper when the plan has such a port.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from vifplug import exceptions
from vifplug.ovsdb import connection, ops, views
from vifplug.records import Allocation, JsonObject

OFPORT, OVN_INSTALLED = "ofport", "ovn-installed"
CONDITIONS = {OFPORT: "an ofport", OVN_INSTALLED: "ovn-controller's ovn-installed"}
#: What ovn-controller reads (iface-id) and writes (the others) on an Interface.
OVN_KEYS = ("iface-id", "ovn-installed", "ovn-installed-ts")


def port_of(allocation: Allocation) -> str | None:
    """The OVS interface whose ofport says the VIF is ready, if vifplug made one."""
    if allocation.bridge and allocation.created_port:
        return allocation.port
    return None


class OvsPorts:
    """Reads and switches the OVS ports of plugged VIFs through one connection."""

    def __init__(self, ovsdb: connection.Connection, *, iface_id_rule: str = "auto") -> None:
        self._ovsdb = ovsdb
        self._rule = iface_id_rule

    def wait_ready(
        self, allocation: Allocation, mode: str, timeout: float, *, vif_id: str, active: bool
    ) -> None:
        """Block until the VIF's port has an ofport (``ofport``) or OVN installed
        it (``ovn-installed``).

        Raises ``PlugTimeout`` saying what the host saw, ``IfaceIdTaken`` when
        a VIF plugged ``active`` was made inactive by a newer plug of its
        iface-id meanwhile (OVN will never install it), ``InterfaceError`` when
        ovs-vswitchd could not attach the device, ``InterfaceGone`` when an
        unplug removed it."""
        port = port_of(allocation)
        if port is None or mode not in (OFPORT, OVN_INSTALLED):
            return
        # A device libvirt will create later (create_tap=False) is missing for
        # now: ovs-vswitchd's "No such device" is not a failure then.
        ours = allocation.device in allocation.created_devices

        def ready(view: views.InterfaceView) -> bool:
            if view.failed and ours:
                return True
            if mode == OFPORT:
                return view.has_ofport
            if active and view.external_ids.get("iface-status") == "inactive":
                return True  # taken: answered below
            # An inactive interface whose iface-id is hidden from OVN is never
            # installed by it: ready when ovs-vswitchd attached it.
            if view.iface_id_hidden:
                return view.has_ofport
            return view.external_ids.get("ovn-installed") == "true"

        started = time.monotonic()
        view = self._ovsdb.wait_interface(port, ready, timeout)
        if view is None:
            seen, details = self.what_is_seen(port, mode)
            raise exceptions.PlugTimeout(
                vif_id=vif_id,
                device=allocation.device,
                condition=CONDITIONS[mode],
                timeout=timeout,
                seen=seen,
                waited=round(time.monotonic() - started, 3),
                **details,
            )
        if view.failed and ours:
            raise exceptions.InterfaceError(
                device=port, bridge=allocation.bridge, reason=view.error or "ofport is -1"
            )
        if mode == OVN_INSTALLED and active and view.external_ids.get("iface-status") == "inactive":
            raise exceptions.IfaceIdTaken(
                vif_id=vif_id, iface_id=view.iface_id, taken_by=self._active_other(view)
            )

    def what_is_seen(self, port: str, mode: str) -> tuple[str, JsonObject]:
        """What the host shows of a port that is not ready: one phrase for the
        message, and the facts for the error's details."""
        view = self._ovsdb.interface(port)
        if view is None:
            return "the interface is not in OVSDB", {}
        present = [k for k in OVN_KEYS if k in view.external_ids]
        details: JsonObject = {
            "ofport": view.ofport,
            "link_state": view.link_state,
            "error": view.error,
            "ovn_keys_present": present,
            "ovn_keys_missing": [k for k in OVN_KEYS if k not in present],
        }
        if view.failed:
            return f"ovs-vswitchd could not attach it: {view.error or 'ofport -1'}", details
        if not view.has_ofport:
            return "ovs-vswitchd has not given it an ofport", details
        seen = f"it has ofport {view.ofport}, link {view.link_state or 'unknown'}"
        if mode == OVN_INSTALLED:
            host = self._ovsdb.host()
            if host is None or "ovn-remote" not in host.external_ids:
                return f"{seen}; no ovn-controller is configured on this host", details
            return f"{seen}, but ovn-controller has not set ovn-installed", details
        return seen, details

    def _active_other(self, view: views.InterfaceView) -> str:
        """The interface that now carries ``view``'s iface-id, for the 409."""
        for other in self._ovsdb.interfaces_with_iface_id(view.iface_id or ""):
            if other.name != view.name and other.external_ids.get("iface-status") == "active":
                return other.name
        return "another interface"

    def set_status(self, allocation: Allocation, status: str, *, exclusive: bool) -> list[str]:
        """Set iface-status on the VIF's interface; returns the names of the
        interfaces this made inactive (one transaction)."""
        port = port_of(allocation)
        if port is None:
            return []
        return self._ovsdb.transact(
            ops.set_iface_status_op(port, status, exclusive=exclusive, rule=self._rule)
        )

    def enforce_iface_id_rule(self, allocations: Iterable[Allocation]) -> None:
        """Place every port's iface-id by the rule and its iface-status, in one
        transaction that changes nothing when all is right (reconciliation)."""
        names = [p for p in map(port_of, allocations) if p is not None]
        if names:
            self._ovsdb.transact(ops.enforce_iface_id_rule_op(names, rule=self._rule))

    def ofport(self, allocation: Allocation) -> int | None:
        port = port_of(allocation)
        view = self._ovsdb.interface(port) if port is not None else None
        return view.ofport if view is not None else None
