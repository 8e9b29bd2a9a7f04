"""The OVS port of a plugged VIF: waiting for it, its iface-status, its ofport.

os-vif's plugin contract ends when the port is made; what the compute
service asks afterwards (answer when ovs-vswitchd gave the port an ofport or
ovn-controller installed it, switch which interface of an iface-id is active,
show the ofport) concerns any allocation with an OVS port, whichever plugin
made it.  The service uses this helper when the plan has such a port.
"""

from __future__ import annotations

from collections.abc import Iterable

from vifplug import exceptions
from vifplug.ovsdb import connection, ops, views
from vifplug.records import Allocation

OFPORT, OVN_INSTALLED = "ofport", "ovn-installed"


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

    def wait_ready(self, allocation: Allocation, mode: str, timeout: float) -> bool:
        """Block until the VIF's port has an ofport (``ofport``) or OVN bound it
        (``ovn-installed``); False on timeout.  Raises ``InterfaceError`` when
        ovs-vswitchd reports it could not attach the device, ``InterfaceGone``
        when an unplug removed it meanwhile."""
        port = port_of(allocation)
        if port is None or mode not in (OFPORT, OVN_INSTALLED):
            return True
        # A device libvirt will create later (create_tap=False) is missing for
        # now: ovs-vswitchd's "No such device" is not a failure then.
        ours = allocation.device in allocation.created_devices

        def ready(view: views.InterfaceView) -> bool:
            if view.failed and ours:
                return True
            # An inactive interface whose iface-id is hidden from OVN is never
            # installed by it: ready when ovs-vswitchd attached it.
            if mode == OVN_INSTALLED and not view.iface_id_hidden:
                return view.external_ids.get("ovn-installed") == "true"
            return view.has_ofport

        view = self._ovsdb.wait_interface(port, ready, timeout)
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
