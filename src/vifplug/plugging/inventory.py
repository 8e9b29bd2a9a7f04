"""What this daemon made on the host, found by its own marks.

vifplug marks every OVS interface it creates with ``vifplug-owner`` (and
``vifplug-vif-id``) in ``external_ids``, and every device it creates with its
kernel link group.  Reconciliation compares these marks with the state store;
nothing without the marks is ever touched.
"""

from __future__ import annotations

import dataclasses

from vifplug import netdev
from vifplug.ovsdb import connection, ops
from vifplug.plugins import base as plugin_base


@dataclasses.dataclass(frozen=True)
class Snapshot:
    ports: dict[str, str]  # interface name -> vifplug-vif-id
    links: frozenset[str]  # devices in our link group


class Inventory:
    """Finds and removes what carries this daemon's marks."""

    def __init__(
        self,
        *,
        ovsdb: connection.Connection,
        deleter: netdev.Deleter,
        owner: str,
        link_group: int,
    ) -> None:
        self._ovsdb = ovsdb
        self._deleter = deleter
        self._owner = owner
        self._link_group = link_group

    def take(self) -> Snapshot:
        ports: dict[str, str] = {}
        for view in self._ovsdb.interfaces():
            if view.external_ids.get(plugin_base.KEY_OWNER) == self._owner:
                ports[view.name] = view.external_ids.get(plugin_base.KEY_VIF_ID, "")
        links = netdev.list_links(group=self._link_group)
        netdev.note_listed(links, self._link_group)  # their unplugs need not ask again
        return Snapshot(
            ports=ports, links=frozenset(link.name for link in links if not link.in_the_making)
        )

    def port_exists(self, name: str) -> bool:
        return self._ovsdb.interface(name) is not None

    def remove_ports(self, names: list[str]) -> None:
        """Remove our leaked ports, all in one transaction."""
        if not names:
            return
        mark = {plugin_base.KEY_OWNER: self._owner}
        self._ovsdb.transact(
            connection.flatten(ops.remove_port_op(n, require_ids=mark) for n in names)
        )

    def delete_links(self, names: list[str]) -> None:
        if names:
            self._deleter.delete(names)
