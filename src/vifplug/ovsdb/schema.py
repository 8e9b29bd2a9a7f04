"""The subset of the Open_vSwitch schema vifplug monitors, and how to fetch it.

Monitoring only these columns keeps memory and update traffic small on a host
with thousands of ports and unrelated tables (flows, QoS, mirrors...).  Of the
columns ovs-vswitchd writes on an Interface once it is attached, only those
vifplug reads are monitored (``ofport``, ``error``, ``link_state`` for a
plug's timeout): the IDL thread parses every monitored column of every
update, and ``admin_state`` and ``mac_in_use`` were an eighth of a bare
IDL's time in a burst of plugs (docs/performance.md, change 17).  A column
vifplug neither reads nor writes is not here at all (``Bridge datapath_id``,
``Port tag``, ``Interface ofport_request`` were, unused).

The schema's fetch is bounded by its timeout from the connect to the reply:
the ovs bindings' ``transact_block`` waits for ever on a server that accepted
the connection and does not answer (a stopped ovsdb-server), which made a
daemon's start-up hang past every deadline it had.
"""

from __future__ import annotations

import errno
import os
import time
from typing import Any, TypeAlias

import ovs.db.idl
import ovs.jsonrpc
import ovs.poller
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
    result: dict[str, object] = _call(remote, "get_schema", [DB_NAME], timeout)
    return result


def _call(remote: str, method: str, params: list[object], timeout: float) -> Any:
    """One JSON-RPC request to the first of ``remote``'s servers and its
    result, in ``timeout`` seconds at most from the connect to the reply."""
    deadline = time.monotonic() + timeout
    first = remote.split(",")[0].strip()
    error, stream = ovs.stream.Stream.open_block(ovs.stream.Stream.open(first), _ms_left(deadline))
    if error:
        raise exceptions.OvsdbUnavailable(remote=remote, reason=_strerror(error))
    rpc = ovs.jsonrpc.Connection(stream)
    try:
        request = ovs.jsonrpc.Message.create_request(method, params)
        reply = _reply_to(rpc, request, deadline)
        if reply is None:
            raise exceptions.OvsdbUnavailable(
                remote=remote,
                reason=f"no answer to {method} within {timeout:.1f} s (the server "
                "accepted the connection)",
                method=method,
                timeout=round(timeout, 3),
            )
        if isinstance(reply, int):
            raise exceptions.OvsdbUnavailable(
                remote=remote, reason=f"no answer to {method}: {_strerror(reply)}", method=method
            )
        if reply.error:
            raise exceptions.OvsdbUnavailable(remote=remote, reason=str(reply.error), method=method)
        return reply.result
    finally:
        rpc.close()


def _reply_to(
    rpc: ovs.jsonrpc.Connection, request: ovs.jsonrpc.Message, deadline: float
) -> ovs.jsonrpc.Message | int | None:
    """The reply to ``request``; the connection's error if it failed first,
    None if ``deadline`` came first."""
    error = rpc.send(request)
    while not error:
        error, msg = rpc.recv()
        if error == errno.EAGAIN:
            if time.monotonic() >= deadline:
                return None
            rpc.run()
            poller = ovs.poller.Poller()
            rpc.wait(poller)
            rpc.recv_wait(poller)
            poller.timer_wait(_ms_left(deadline))
            poller.block()
            error = 0
        elif msg is not None and msg.id == request.id and msg.type in _ANSWERS:
            return msg
    return int(error)


_ANSWERS = (ovs.jsonrpc.Message.T_REPLY, ovs.jsonrpc.Message.T_ERROR)


def _ms_left(deadline: float) -> int:
    return max(1, int((deadline - time.monotonic()) * 1000))


def schema_helper(schema_json: dict[str, object]) -> ovs.db.idl.SchemaHelper:
    helper = ovs.db.idl.SchemaHelper(None, schema_json)
    for table, columns in COLUMNS.items():
        helper.register_columns(table, list(columns))
    return helper


def _strerror(error: int) -> str:
    if error == ovs.jsonrpc.EOF:
        return "the server closed the connection"
    return os.strerror(error) if isinstance(error, int) and error > 0 else str(error)
