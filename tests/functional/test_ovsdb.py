"""The OVSDB connection's batching against a real ovsdb-server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import ovs.json as ovs_json
import pytest

import ovs_sandbox
from helpers import paused, unique
from vifplug import exceptions
from vifplug.ovsdb import connection, ops, replica, schema, views
from vifplug.ovsdb.txn import Txn


@pytest.fixture
def conn(ovs: ovs_sandbox.OvsSandbox) -> Iterator[connection.Connection]:
    c = connection.Connection(ovs.remote, gather_max=2.0).start()
    try:
        yield c
    finally:
        c.stop()


def bridge_op(name: str) -> ops.Op:
    return ops.ensure_bridge_op(ops.BridgeSpec(name=name, datapath_type="netdev"))


def test_writes_announced_with_expecting_share_one_transaction(
    conn: connection.Connection, ovs: ovs_sandbox.OvsSandbox
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
    conn: connection.Connection, ovs: ovs_sandbox.OvsSandbox
) -> None:
    a = unique("vpgc")
    done = threading.Event()
    try:

        def laggard() -> None:
            with conn.expecting():
                done.wait(120)

        t = threading.Thread(target=laggard)
        t.start()
        started = time.monotonic()
        conn.transact(bridge_op(a), timeout=60)
        waited = time.monotonic() - started
        # Held for gather_max (2 s), not until the laggard gives up (120 s).
        assert 1.5 <= waited < 60, waited
        done.set()
        t.join()
    finally:
        ovs.vsctl("--if-exists", "del-br", a)


@pytest.mark.parametrize("parser", [ovs_json.PARSER_C, ovs_json.PARSER_PY])
def test_either_json_parser_reads_and_writes_the_database(
    ovs: ovs_sandbox.OvsSandbox, monkeypatch: pytest.MonkeyPatch, parser: str
) -> None:
    """The C parser where the venv has it (scripts/link-ovs-c-parser), the pure
    Python one where it does not: the initial contents, a transaction's
    reply and the update that follows are read either way."""
    if parser == ovs_json.PARSER_C and ovs_json.PARSER != ovs_json.PARSER_C:
        pytest.skip("this interpreter's ovs bindings have no C parser")
    monkeypatch.setattr(ovs_json, "PARSER", parser)
    a, b = unique("vpjp"), unique("vpjp")
    ovs.vsctl("add-br", a, "--", "set", "Bridge", a, "datapath_type=netdev")
    c = connection.Connection(ovs.remote).start()
    try:
        assert connection.json_parser().startswith("C (" if parser == ovs_json.PARSER_C else "pure")
        assert c.replica.interface(a) is not None
        assert c.transact(bridge_op(b), timeout=60) is True
        deadline = time.monotonic() + 60
        while c.replica.interface(b) is None:
            assert time.monotonic() < deadline, f"{b} never seen in the replica"
            time.sleep(0.05)
    finally:
        c.stop()
        ovs.vsctl("--if-exists", "del-br", a, "--", "--if-exists", "del-br", b)


def test_a_lone_write_is_not_held(ovs: ovs_sandbox.OvsSandbox) -> None:
    """With gathering and holding bounds far above any commit time, a lone
    write that was held would take at least one of them; it takes less."""
    bound = 30.0
    c = connection.Connection(ovs.remote, gather_max=bound, hold_max=bound).start()
    a, b = unique("vpgd"), unique("vpgd")
    try:
        c.transact(bridge_op(a), timeout=2 * bound)  # connected, and one commit done
        started = time.monotonic()
        c.transact(bridge_op(b), timeout=2 * bound)
        assert time.monotonic() - started < bound
    finally:
        c.stop()
        ovs.vsctl("--if-exists", "del-br", a, "--", "--if-exists", "del-br", b)


def _del_bridges(ovs: ovs_sandbox.OvsSandbox, names: list[str]) -> None:
    ovs.vsctl(*[a for n in names for a in ("--", "--if-exists", "del-br", n)][1:])


def _caught_up(c: connection.Connection) -> None:
    """Until ovs-vswitchd has applied every configuration written so far."""
    deadline = time.monotonic() + 60
    while (lag := c.replica.vswitchd_lag()) is None or lag[0] > 0:
        assert time.monotonic() < deadline, f"ovs-vswitchd never caught up: {lag}"
        time.sleep(0.02)


def test_after_a_batch_is_applied_the_next_gathers_as_many_writes(
    ovs: ovs_sandbox.OvsSandbox,
) -> None:
    """The callers of a batch come back together once ovs-vswitchd applied
    it; the next batch waits (``pace_max`` at most) until as many writes
    as the last one carried are queued, instead of leaving with the first."""
    c = connection.Connection(ovs.remote, pace_max=30.0, gather_max=30.0).start()
    names = [unique("vppc") for _ in range(7)]
    try:
        c.transact(bridge_op(names[0]), timeout=60)
        with c.expecting():  # three writes in one batch
            first = [c.submit(bridge_op(n)) for n in names[1:4]]
        assert [f.result(60) for f in first] == [True] * 3
        _caught_up(c)
        before = c.transactions
        early = c.submit(bridge_op(names[4]))
        time.sleep(0.3)
        assert not early.done(), "the next batch left before the returning writes"
        rest = [c.submit(bridge_op(n)) for n in names[5:]]
        assert [f.result(60) for f in [early, *rest]] == [True] * 3
        assert c.transactions - before == 1
    finally:
        c.stop()
        _del_bridges(ovs, names)


def test_pacing_is_bounded_by_pace_max(ovs: ovs_sandbox.OvsSandbox) -> None:
    """After a batch of two, a write that stays alone leaves after
    ``pace_max`` (4 s from the release), not when a second write would have
    come, and ``gather_max`` (far longer) plays no part in it.  The lower
    bound leaves 2 s for the test to submit the write after the release."""
    c = connection.Connection(ovs.remote, pace_max=4.0, gather_max=120.0).start()
    names = [unique("vppd") for _ in range(3)]
    try:
        with c.expecting():
            pair = [c.submit(bridge_op(n)) for n in names[:2]]
        assert [f.result(60) for f in pair] == [True] * 2
        _caught_up(c)
        started = time.monotonic()
        assert c.transact(bridge_op(names[2]), timeout=60) is True
        assert 2.0 <= time.monotonic() - started < 30
    finally:
        c.stop()
        _del_bridges(ovs, names)


def test_callers_answered_at_their_commit_are_counted_once_by_the_pace(
    ovs: ovs_sandbox.OvsSandbox,
) -> None:
    """Callers answered at the commit (unplugs, plugs with wait=none) come
    back with their next writes before or after ovs-vswitchd applies their
    batch; either way those writes leave together, as soon as all three are
    queued, and not after ``pace_max`` (which counting them both as returning
    and as queued at the release made every such round wait)."""
    bound = 30.0
    c = connection.Connection(ovs.remote, pace_max=bound, gather_max=bound, hold_max=bound).start()
    names = [unique("vppe") for _ in range(6)]
    try:
        with c.expecting():
            first = [c.submit(bridge_op(n)) for n in names[:3]]
        assert [f.result(60) for f in first] == [True] * 3
        before = c.transactions
        started = time.monotonic()
        again = [c.submit(bridge_op(n)) for n in names[3:]]  # held, or paced
        assert [f.result(2 * bound) for f in again] == [True] * 3
        assert time.monotonic() - started < bound / 2
        assert c.transactions - before == 1
    finally:
        c.stop()
        _del_bridges(ovs, names)


def test_a_wait_ends_when_its_interface_is_removed(
    conn: connection.Connection, ovs: ovs_sandbox.OvsSandbox
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


def test_interface_snapshots_from_datums_are_what_the_idl_reads(
    conn: connection.Connection, ovs: ovs_sandbox.OvsSandbox
) -> None:
    """A committed row is read from its datums, one with changes in flight the
    IDL's way (which shows them): both give what ``Row`` attributes say."""
    br, port = unique("vpdb"), unique("vpdp")
    conn.transact(bridge_op(br), timeout=10)
    ovs.vsctl(
        "add-port", br, port, "--", "set", "Interface", port, "type=internal",
        "external_ids:iface-id=abc", "external_ids:vm-id=xyz", "options:k=v",
        "ingress_policing_rate=900", "ingress_policing_burst=90",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not ((v := conn.interface(port)) is not None and v.has_ofport and v.link_state):
            assert time.monotonic() < deadline, "no ofport"
            time.sleep(0.02)

        def both(t: Txn) -> tuple[views.InterfaceView, views.InterfaceView]:
            row = t.interface(port)
            assert row is not None
            return replica.interface_view(row), replica._interface_view_by_attributes(row)

        fast, slow = conn.transact(both, timeout=10, writes=False)
        assert fast == slow == conn.interface(port)
        assert fast.external_ids == {"iface-id": "abc", "vm-id": "xyz"}
        assert (fast.ofport, fast.ingress_policing_rate, fast.ingress_policing_burst) == (
            slow.ofport,
            900,
            90,
        )
        assert fast.options == {"k": "v"} and fast.error is None and fast.type == "internal"

        def pending(t: Txn) -> views.InterfaceView:
            row = t.interface(port)
            assert row is not None
            row.external_ids = {"iface-id": "def"}
            return replica.interface_view(row)

        assert conn.transact(pending, timeout=10).external_ids == {"iface-id": "def"}
    finally:
        ovs.vsctl("--if-exists", "del-br", br)


def test_watchers_see_every_change_of_an_update_in_order(
    conn: connection.Connection, ovs: ovs_sandbox.OvsSandbox
) -> None:
    """The changes of one update reach the watchers together, in one
    notification: each of them, and before the changes of a later update."""
    br = unique("vpwo")
    ports = [f"{br}p{i}" for i in range(5)]
    seen: list[tuple[str, str | None]] = []
    conn.add_interface_watcher(lambda v: seen.append((v.name, v.external_ids.get("n"))))
    conn.transact(bridge_op(br), timeout=10)
    args: list[str] = []
    for i, port in enumerate(ports):
        args += ["--", "add-port", br, port, "--", "set", "Interface", port, "type=internal"]
        args += [f"external_ids:n={i}"]
    try:
        ovs.vsctl(*args[1:])
        ovs.vsctl("set", "Interface", ports[0], "external_ids:n=again")
        deadline = time.monotonic() + 10
        while (ports[0], "again") not in seen:
            assert time.monotonic() < deadline, f"watchers saw only {seen}"
            time.sleep(0.02)
        ours = [entry for entry in seen if entry[0] in ports]
        # ValueError here: a change of the first update was never told.
        firsts = [ours.index((port, str(i))) for i, port in enumerate(ports)]
        assert ours.index((ports[0], "again")) > max(firsts)
    finally:
        ovs.vsctl("--if-exists", "del-br", br)


def test_watchers_run_in_the_notify_thread_and_do_not_hold_transactions(
    ovs: ovs_sandbox.OvsSandbox,
) -> None:
    br, port = unique("vpwb"), unique("vpwp")
    seen: list[str] = []
    release = threading.Event()

    def slow_watcher(view: views.InterfaceView) -> None:
        if view.name == port:
            seen.append(threading.current_thread().name)
            release.wait(20)

    c = connection.Connection(ovs.remote).start()
    try:
        c.add_interface_watcher(slow_watcher)
        c.transact(bridge_op(br), timeout=10)
        ovs.vsctl("add-port", br, port, "--", "set", "Interface", port, "type=internal")
        deadline = time.monotonic() + 10
        while not seen:
            assert time.monotonic() < deadline, "the watcher was not called"
            time.sleep(0.02)
        assert seen[0] == "ovsdb-notify"
        # The watcher is still blocked; the IDL thread goes on committing.
        c.transact(lambda t: None, timeout=5)
        assert c.interface(port) is not None
    finally:
        release.set()
        c.stop()
        ovs.vsctl("--if-exists", "del-br", br)


def test_the_commit_hook_is_given_to_the_connection(ovs: ovs_sandbox.OvsSandbox) -> None:
    br = unique("vpch")
    calls: list[tuple[int, float, str]] = []

    def on_commit(size: int, seconds: float) -> None:
        calls.append((size, seconds, threading.current_thread().name))

    c = connection.Connection(ovs.remote, on_commit=on_commit).start()
    try:
        c.transact(bridge_op(br), timeout=10)
        size, seconds, thread = calls[-1]
        assert size == 1 and 0 <= seconds < 10 and thread == "ovsdb-idl"
    finally:
        c.stop()
        ovs.vsctl("--if-exists", "del-br", br)


def test_resync_callbacks_run_in_the_notify_thread(private_ovs: ovs_sandbox.OvsSandbox) -> None:
    called: list[str] = []
    done = threading.Event()

    def on_resync() -> None:
        called.append(threading.current_thread().name)
        done.set()

    c = connection.Connection(private_ovs.remote, timeout=5).start()
    try:
        c.add_resync_callback(on_resync)
        generation = c.generation
        private_ovs.restart_ovsdb()
        assert done.wait(30), "no resync callback after ovsdb-server restarted"
        assert called == ["ovsdb-notify"]
        assert c.connected and c.generation == generation + 1
    finally:
        c.stop()


def test_a_write_that_makes_the_server_drop_the_connection_fails_alone(
    ovs: ovs_sandbox.OvsSandbox,
) -> None:
    """A NUL in a string is a transaction ovsdb-server's JSON parser rejects:
    it closes the connection.  The batch carrying it used to be resent after
    every reconnect until every caller in it timed out; now it is split, the
    culprit fails alone and the six other writes of its batch commit."""
    c = connection.Connection(ovs.remote, timeout=60, gather_max=5.0).start()
    good = [unique("vpok") for _ in range(6)]
    poisoned = unique("vpnul")

    def poison(t: Txn) -> bool:  # bypasses admission, as a bug would
        bridge = t.insert("Bridge", poisoned)
        bridge.external_ids = {"poison": "a\x00b"}
        return True

    try:
        with c.expecting():  # all seven go out in one batch
            futures = [c.submit(bridge_op(n)) for n in good[:3]]
            bad = c.submit(poison)
            futures += [c.submit(bridge_op(n)) for n in good[3:]]
        for f in futures:
            assert f.result(60) is True
        with pytest.raises(exceptions.OvsdbTransactionFailed, match="closed the connection"):
            bad.result(60)
        assert set(good) <= set(ovs.vsctl("list-br").split())
        assert poisoned not in ovs.vsctl("list-br").split()
        assert max(c.batch_sizes) == 1, "the batch was not split"
        # The connection is usable again.
        again = unique("vpag")
        good.append(again)
        assert c.transact(bridge_op(again), timeout=60) is True
    finally:
        c.stop()
        for n in good:
            ovs.vsctl("--if-exists", "del-br", n)


def raised_within(call: Callable[[], object], seconds: float) -> BaseException | None:
    """What ``call`` raised, run in a thread; fails if it still runs after ``seconds``."""
    outcome: list[BaseException] = []

    def attempt() -> None:
        try:
            call()
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=attempt, daemon=True)
    caller.start()
    caller.join(seconds)
    assert not caller.is_alive(), f"still waiting after {seconds} s"
    return outcome[0] if outcome else None


def test_the_schema_fetch_ends_at_its_timeout_when_the_server_does_not_answer(
    private_ovs: ovs_sandbox.OvsSandbox,
) -> None:
    """A stopped ovsdb-server still accepts connections (the kernel queues
    them) and answers nothing: the schema's fetch, a daemon's first request,
    gives up at its timeout instead of waiting for ever, so that the start-up
    goes on retrying and saying what it waits for."""
    with paused(private_ovs.ovsdb_pid):
        started = time.monotonic()
        # A call still blocked ends when the server resumes.
        raised = raised_within(lambda: schema.fetch_schema_json(private_ovs.remote, 0.5), 5.0)
        assert 0.5 <= time.monotonic() - started
        assert isinstance(raised, exceptions.OvsdbUnavailable), raised
        assert "no answer to get_schema within 0.5 s" in str(raised)
        assert raised.context["method"] == "get_schema"
        # A connection's start gives up at its own deadline.
        starting = connection.Connection(private_ovs.remote)
        try:
            started = time.monotonic()
            raised = raised_within(lambda: starting.start(wait=1.0), 10.0)
            assert isinstance(raised, exceptions.OvsdbUnavailable), raised
            assert 1.0 <= time.monotonic() - started < 5
        finally:
            starting.stop()
    assert schema.fetch_schema_json(private_ovs.remote, 10)["name"] == "Open_vSwitch"
