"""The OVSDB connection's batching against a real ovsdb-server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from helpers import unique
from vifplug.ovsdb import connection, ops, sandbox


@pytest.fixture
def conn(ovs: sandbox.OvsSandbox) -> Iterator[connection.Connection]:
    c = connection.Connection(ovs.remote, gather_max=2.0).start()
    try:
        yield c
    finally:
        c.stop()


def bridge_op(name: str) -> ops.Op:
    return ops.ensure_bridge_op(ops.BridgeSpec(name=name, datapath_type="netdev"))


def test_writes_announced_with_expecting_share_one_transaction(
    conn: connection.Connection, ovs: sandbox.OvsSandbox
) -> None:
    a, b = unique("vpga"), unique("vpgb")
    try:
        entered, release = threading.Event(), threading.Event()
        futures = {}

        def preparer() -> None:
            with conn.expecting():
                entered.set()
                release.wait(10)
                futures["b"] = conn.submit(bridge_op(b))

        t = threading.Thread(target=preparer)
        t.start()
        assert entered.wait(5)
        before = conn.transactions
        futures["a"] = conn.submit(bridge_op(a))
        time.sleep(0.3)
        assert not futures["a"].done(), "the batch did not wait for the announced write"
        release.set()
        t.join()
        assert futures["a"].result(10) is True and futures["b"].result(10) is True
        assert conn.transactions - before == 1
    finally:
        ovs.vsctl("--if-exists", "del-br", a, "--", "--if-exists", "del-br", b)


def test_gathering_is_bounded_by_gather_max(
    conn: connection.Connection, ovs: sandbox.OvsSandbox
) -> None:
    a = unique("vpgc")
    done = threading.Event()
    try:

        def laggard() -> None:
            with conn.expecting():
                done.wait(20)

        t = threading.Thread(target=laggard)
        t.start()
        started = time.monotonic()
        conn.transact(bridge_op(a), timeout=10)
        waited = time.monotonic() - started
        assert 1.5 <= waited < 6, waited
        done.set()
        t.join()
    finally:
        ovs.vsctl("--if-exists", "del-br", a)


def test_a_lone_write_is_not_held(conn: connection.Connection, ovs: sandbox.OvsSandbox) -> None:
    a = unique("vpgd")
    try:
        started = time.monotonic()
        conn.transact(bridge_op(a), timeout=10)
        assert time.monotonic() - started < 1.0
    finally:
        ovs.vsctl("--if-exists", "del-br", a)


def test_a_wait_ends_when_its_interface_is_removed(
    conn: connection.Connection, ovs: sandbox.OvsSandbox
) -> None:
    from vifplug import exceptions

    br, port = unique("vpge"), unique("vpgp")
    ovs.vsctl("add-br", br, "--", "set", "Bridge", br, "datapath_type=netdev")
    ovs.vsctl("add-port", br, port, "--", "set", "Interface", port, "type=internal")
    try:
        deadline = time.monotonic() + 10
        while conn.interface(port) is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        threading.Timer(0.3, lambda: ovs.vsctl("del-port", br, port)).start()
        started = time.monotonic()
        with pytest.raises(exceptions.InterfaceGone):
            conn.wait_interface(port, lambda v: False, timeout=20)
        assert time.monotonic() - started < 5
    finally:
        ovs.vsctl("--if-exists", "del-br", br)
