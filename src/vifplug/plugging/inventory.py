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
from vifplug.plugins import base


@dataclasses.dataclass(frozen=True)
class Inventory:
    ports: dict[str, str]  # interface name -> vifplug-vif-id
    links: frozenset[str]  # devices in our link group


def take(ctx: base.PluginContext) -> Inventory:
    ports: dict[str, str] = {}
    for view in ctx.ovsdb.interfaces():
        if view.external_ids.get(base.KEY_OWNER) == ctx.owner:
            ports[view.name] = view.external_ids.get(base.KEY_VIF_ID, "")
    links = frozenset(link.name for link in netdev.list_links(group=ctx.netdev.link_group))
    return Inventory(ports=ports, links=links)


def port_exists(ctx: base.PluginContext, name: str) -> bool:
    return ctx.ovsdb.interface(name) is not None


def remove_ports(ctx: base.PluginContext, names: list[str]) -> None:
    """Remove our leaked ports, all in one transaction."""
    if not names:
        return
    ctx.ovsdb.transact(
        connection.flatten(
            ops.remove_port_op(n, require_ids={base.KEY_OWNER: ctx.owner}) for n in names
        )
    )


def delete_links(ctx: base.PluginContext, names: list[str]) -> None:
    if names:
        ctx.deleter.delete(names)
