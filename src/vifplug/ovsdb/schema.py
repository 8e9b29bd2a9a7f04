"""The subset of the Open_vSwitch schema vifplug monitors, and how to fetch it.

Monitoring only these columns keeps memory and update traffic small on a host
with thousands of ports and unrelated tables (flows, QoS, mirrors...).  Of the
columns ovs-vswitchd writes on an Interface once it is attached, only those
vifplug reads are monitored (``ofport``, ``error``, ``link_state`` for a
plug's timeout): the IDL thread parses every monitored column of every
update, and ``admin_state`` and ``mac_in_use`` were an eighth of its time in
a burst of plugs (docs/performance.md, change 17).  A column vifplug neither
reads nor writes is not here at all (``Bridge datapath_id``, ``Port tag``,
``Interface ofport_request`` were, unused).
"""

from __future__ import annotations

from typing import Any, TypeAlias

import ovs.db.idl
import ovs.jsonrpc
import ovs.stream

from vifplug import exceptions

DB_NAME = "Open_vSwitch"

Row: TypeAlias = Any
"""An ``ovs.db.idl.Row`` of one of the tables below (or one a transaction
inserted).  The ovs bindings are untyped, and a row's columns are attributes
made from the schema at run time; this is the one name vifplug gives them."""

COLUMNS: dict[str, tuple[str, ...]] = {
    "Open_vSwitch": (
        "bridges",
        "external_ids",
        "other_config",
        "system_type",
        "system_version",
        "cur_cfg",
        "next_cfg",
        "ovs_version",
    ),
    "Bridge": ("name", "ports", "external_ids", "other_config", "datapath_type"),
    "Port": ("name", "interfaces", "external_ids", "other_config"),
    "Interface": (
        "name",
        "type",
        "external_ids",
        "ofport",
        "options",
        "error",
        "link_state",
        "ingress_policing_rate",
        "ingress_policing_burst",
        "mtu_request",
    ),
}


def fetch_schema_json(remote: str, timeout: float) -> dict[str, object]:
    """Ask the server for its schema, so we work with whatever OVS version runs."""
    first = remote.split(",")[0].strip()
    error, stream = ovs.stream.Stream.open_block(ovs.stream.Stream.open(first), int(timeout * 1000))
    if error:
        raise exceptions.OvsdbUnavailable(remote=remote, reason=_strerror(error))
    rpc = ovs.jsonrpc.Connection(stream)
    try:
        request = ovs.jsonrpc.Message.create_request("get_schema", [DB_NAME])
        error, reply = rpc.transact_block(request)
        if error:
            raise exceptions.OvsdbUnavailable(remote=remote, reason=_strerror(error))
        if reply.error:
            raise exceptions.OvsdbUnavailable(remote=remote, reason=str(reply.error))
        result: dict[str, object] = reply.result
        return result
    finally:
        rpc.close()


def schema_helper(schema_json: dict[str, object]) -> ovs.db.idl.SchemaHelper:
    helper = ovs.db.idl.SchemaHelper(None, schema_json)
    for table, columns in COLUMNS.items():
        helper.register_columns(table, list(columns))
    return helper


def _strerror(error: int) -> str:
    import os

    return os.strerror(error) if isinstance(error, int) and error > 0 else str(error)
