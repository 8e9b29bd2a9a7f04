"""The state store: lifecycle, indexes, pool membership, group commit, crash safety."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vifplug import exceptions
from vifplug.records import Allocation, Bandwidth, Lifecycle, VifRecord
from vifplug.state import codec, migrations
from vifplug.state import store as state_store


def make_record(
    vif_id: str,
    *,
    iface_id: str | None = None,
    allocation: Allocation | None = None,
    **changes: Any,
) -> VifRecord:
    request = {
        "vif": {
            "versioned_object.name": "VIFOpenVSwitch",
            "versioned_object.namespace": "os_vif",
            "versioned_object.version": "1.2",
            "versioned_object.data": {
                "id": vif_id,
                "address": "fa:16:3e:00:00:01",
                "plugin": "ovs",
                "nested": [1, {"a": None}],
            },
        },
        "instance": {
            "versioned_object.name": "InstanceInfo",
            "versioned_object.data": {"uuid": "inst-1", "name": "vm1"},
        },
    }
    record = VifRecord(
        vif_id=vif_id,
        plugin="ovs",
        obj_name="VIFOpenVSwitch",
        obj_version="1.2",
        instance_uuid="inst-1",
        instance_name="vm1",
        request_json=codec.dumps(request),
        request_digest=hashlib.sha256(codec.dumps(request).encode()).hexdigest(),
        lifecycle=Lifecycle.PLUGGING,
        iface_id=iface_id,
        mac="fa:16:3e:00:00:01",
        allocation=allocation,
    )
    return record.with_changes(**changes)


def pool_alloc(device: str, mode: str = "vepa", network: str = "test") -> Allocation:
    # Each VIF has a macvtap of its own on the pool device.
    return Allocation(
        plugin="direct",
        device=f"mvt{uuid.uuid4().hex[:12]}",
        network=network,
        pool_device=device,
        mode=mode,
    )


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "state" / "vifplug.sqlite")


@pytest.fixture
def store(db_path: str) -> Iterator[state_store.Store]:
    s = state_store.Store(db_path)
    try:
        yield s
    finally:
        s.close()


def reopen(s: state_store.Store) -> state_store.Store:
    s.close()
    return state_store.Store(s.path)


# --- opening ------------------------------------------------------------------------


def test_new_database_is_private_and_at_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "vifplug.sqlite"
    with state_store.Store(str(path)) as s:
        assert s.meta_get("schema_version") == str(migrations.SCHEMA_VERSION)
        assert s.all() == []
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_path_in_state_dir() -> None:
    assert state_store.path_in("/var/lib/vifplug") == "/var/lib/vifplug/vifplug.sqlite"


def test_second_store_on_the_same_database_is_refused(store: state_store.Store) -> None:
    with pytest.raises(exceptions.StateUnavailable, match="second vifplugd"):
        state_store.Store(store.path)


def test_lock_is_released_on_close(db_path: str) -> None:
    state_store.Store(db_path).close()
    state_store.Store(db_path).close()


def test_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "vifplug.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(exceptions.StateUnavailable) as err:
        state_store.Store(str(path))
    assert err.value.code == "state_unavailable"


def test_foreign_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "vifplug.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE something_else (x)")
    conn.commit()
    conn.close()
    with pytest.raises(exceptions.StateUnavailable, match="not a vifplug state database"):
        state_store.Store(str(path))


def test_unreadable_record_stops_the_start(store: state_store.Store) -> None:
    store.begin_plug(make_record("v1"))
    store.close()
    conn = sqlite3.connect(store.path)
    conn.execute("UPDATE vifs SET request_json = '{broken' WHERE vif_id = 'v1'")
    conn.commit()
    conn.close()
    with pytest.raises(exceptions.StateUnavailable, match="VIF v1"):
        state_store.Store(store.path)


def test_allocation_format_newer_than_the_code_is_refused(store: state_store.Store) -> None:
    store.begin_plug(make_record("v1", allocation=Allocation(plugin="ovs", device="tap1")))
    store.close()
    conn = sqlite3.connect(store.path)
    conn.execute("""UPDATE vifs SET allocation_json = '{"format": 99, "plugin": "ovs",
                    "device": "tap1", "new_field": 1}'""")
    conn.commit()
    conn.close()
    with pytest.raises(exceptions.StateSchemaTooNew, match="allocation format") as err:
        state_store.Store(store.path)
    assert err.value.code == "state_schema_too_new"


# --- lifecycle ------------------------------------------------------------------------


def test_begin_plug_records_the_request_durably(store: state_store.Store) -> None:
    record = make_record("v1", iface_id="port-1")
    store.begin_plug(record)
    got = store.get("v1")
    assert got is not None and got.lifecycle is Lifecycle.PLUGGING
    assert got.created_at > 0 and got.updated_at == got.created_at
    store = reopen(store)
    try:
        again = store.get("v1")
        assert again == got
        assert again is not None and again.request == record.request
        assert again.request_digest == record.request_digest
    finally:
        store.close()


def test_full_plug_and_unplug(store: state_store.Store) -> None:
    store.begin_plug(make_record("v1", iface_id="port-1"))
    plugging = store.get("v1")
    assert plugging is not None and plugging.lifecycle is Lifecycle.PLUGGING
    alloc = Allocation(
        plugin="ovs",
        device="tap1",
        bridge="br-int",
        port="tap1",
        created_devices=("tap1",),
        created_port=True,
        bandwidth=Bandwidth(inbound_average=10),
        virtualport={"type": "openvswitch", "profileid": "x"},
    )
    plugged = store.finish_plug("v1", alloc, iface_status="active")
    assert plugged.lifecycle is Lifecycle.PLUGGED and plugged.allocation == alloc
    assert plugged.iface_status == "active"
    assert plugged.updated_at >= plugging.updated_at >= plugged.created_at

    store = reopen(store)
    try:
        assert store.get("v1") == plugged
        unplugging = store.begin_unplug("v1")
        assert unplugging.lifecycle is Lifecycle.UNPLUGGING
        assert unplugging.allocation == alloc  # what to remove stays recorded
        store = reopen(store)
        assert store.get("v1") == unplugging
        store.finish_unplug("v1")
        assert store.get("v1") is None
        store = reopen(store)
        assert store.get("v1") is None and store.all() == []
    finally:
        store.close()


def test_every_unfinished_operation_is_still_recorded_after_restart(
    store: state_store.Store,
) -> None:
    for vif_id in ("a", "b", "c"):
        store.begin_plug(make_record(vif_id))
    store.finish_plug("a", Allocation(plugin="ovs", device="tapa"), iface_status=None)
    store.finish_plug("c", Allocation(plugin="ovs", device="tapc"), iface_status=None)
    store.begin_unplug("c")
    store = reopen(store)
    try:
        assert {(r.vif_id, r.lifecycle) for r in store.all()} == {
            ("a", Lifecycle.PLUGGED),
            ("b", Lifecycle.PLUGGING),
            ("c", Lifecycle.UNPLUGGING),
        }
    finally:
        store.close()


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.finish_plug("nope", Allocation(plugin="ovs", device="t"), iface_status=None),
        lambda s: s.begin_unplug("nope"),
        lambda s: s.finish_unplug("nope"),
        lambda s: s.set_status({"nope": "active"}),
    ],
    ids=["finish_plug", "begin_unplug", "finish_unplug", "set_status"],
)
def test_unknown_vif_raises_vif_not_found(store: state_store.Store, call: Any) -> None:
    with pytest.raises(exceptions.VIFNotFound) as err:
        call(store)
    assert err.value.context == {"vif_id": "nope"}
    assert store.transactions == 0


def test_second_begin_plug_of_a_known_vif_is_refused(store: state_store.Store) -> None:
    store.begin_plug(make_record("v1"))
    with pytest.raises(exceptions.VIFLifecycleError, match="plugging"):
        store.begin_plug(make_record("v1", instance_name="other"))
    got = store.get("v1")
    assert got is not None and got.instance_name == "vm1"


def test_finish_unplug_needs_the_intent_recorded_first(store: state_store.Store) -> None:
    store.begin_plug(make_record("v1"))
    with pytest.raises(exceptions.VIFLifecycleError, match="cannot finish an unplug"):
        store.finish_unplug("v1")
    assert store.get("v1") is not None


def test_an_unplug_in_flight_cannot_be_turned_back_into_a_plug(store: state_store.Store) -> None:
    store.begin_plug(make_record("v1"))
    store.begin_unplug("v1")
    with pytest.raises(exceptions.VIFLifecycleError):
        store.finish_plug("v1", Allocation(plugin="ovs", device="t"), iface_status=None)
    got = store.get("v1")
    assert got is not None and got.lifecycle is Lifecycle.UNPLUGGING


def test_begin_unplug_is_idempotent(store: state_store.Store) -> None:
    store.begin_plug(make_record("v1"))
    first = store.begin_unplug("v1")
    before = store.transactions
    assert store.begin_unplug("v1") == first
    assert store.transactions == before


# --- set_status and iface-id index -----------------------------------------------------


def test_set_status_changes_several_vifs_in_one_transaction(store: state_store.Store) -> None:
    for vif_id in ("a", "b", "c"):
        store.begin_plug(make_record(vif_id, iface_id="port-1"))
    before = store.transactions
    store.set_status({"a": "active", "b": "inactive", "c": "inactive"})
    assert store.transactions == before + 1
    assert [r.iface_status for r in store.by_iface_id("port-1")] == [
        "active",
        "inactive",
        "inactive",
    ]
    store = reopen(store)
    try:
        assert {r.vif_id: r.iface_status for r in store.all()} == {
            "a": "active",
            "b": "inactive",
            "c": "inactive",
        }
    finally:
        store.close()


def test_set_status_with_an_unknown_vif_changes_nothing(store: state_store.Store) -> None:
    store.begin_plug(make_record("a"))
    with pytest.raises(exceptions.VIFNotFound):
        store.set_status({"a": "active", "ghost": "inactive"})
    got = store.get("a")
    assert got is not None and got.iface_status is None


def test_by_iface_id_follows_every_change(store: state_store.Store) -> None:
    store.begin_plug(make_record("a", iface_id="p1"))
    store.begin_plug(make_record("b", iface_id="p1"))
    store.begin_plug(make_record("c", iface_id="p2"))
    store.begin_plug(make_record("d"))
    assert [r.vif_id for r in store.by_iface_id("p1")] == ["a", "b"]
    assert [r.vif_id for r in store.by_iface_id("p2")] == ["c"]
    assert store.by_iface_id("p3") == []
    store.begin_unplug("a")
    store.finish_unplug("a")
    assert [r.vif_id for r in store.by_iface_id("p1")] == ["b"]
    store = reopen(store)
    try:
        assert [r.vif_id for r in store.by_iface_id("p1")] == ["b"]
        assert [r.vif_id for r in store.by_iface_id("p2")] == ["c"]
    finally:
        store.close()


# --- pools ------------------------------------------------------------------------------


def test_pool_holders_are_derived_from_allocations(store: state_store.Store) -> None:
    store.begin_plug(make_record("a", allocation=pool_alloc("eth10")))
    store.begin_plug(make_record("b"))
    store.finish_plug("b", pool_alloc("eth10"), iface_status=None)
    store.begin_plug(make_record("c", allocation=pool_alloc("eth11")))
    store.begin_plug(make_record("d", allocation=pool_alloc("eth10", network="other")))
    assert store.pool_holders("test") == {"eth10": ["a", "b"], "eth11": ["c"]}
    assert store.pool_holders("other") == {"eth10": ["d"]}
    assert store.pool_holders("unknown") == {}

    store.finish_plug("c", pool_alloc("eth12"), iface_status=None)  # moved
    store.begin_unplug("a")
    assert store.pool_holders("test") == {"eth10": ["a", "b"], "eth12": ["c"]}
    store.finish_unplug("a")
    assert store.pool_holders("test") == {"eth10": ["b"], "eth12": ["c"]}
    store = reopen(store)
    try:
        assert store.pool_holders("test") == {"eth10": ["b"], "eth12": ["c"]}
        assert store.pool_holders("other") == {"eth10": ["d"]}
    finally:
        store.close()


def test_a_passthrough_device_serves_one_vif_alone(store: state_store.Store) -> None:
    store.begin_plug(make_record("pt", allocation=pool_alloc("eth10", mode="passthrough")))
    with pytest.raises(exceptions.PoolDeviceTaken) as err:
        store.begin_plug(make_record("shared", allocation=pool_alloc("eth10")))
    assert err.value.context["holder"] == "pt"
    assert store.get("shared") is None
    store.begin_plug(make_record("v1", allocation=pool_alloc("eth11")))
    store.begin_plug(make_record("v2", allocation=pool_alloc("eth11")))  # vepa shares
    with pytest.raises(exceptions.PoolDeviceTaken):
        store.finish_plug("pt", pool_alloc("eth11", mode="passthrough"), iface_status=None)
    # The holder itself may rewrite its own allocation.
    store.finish_plug("pt", pool_alloc("eth10", mode="passthrough"), iface_status=None)
    assert store.pool_holders("test") == {"eth10": ["pt"], "eth11": ["v1", "v2"]}


def test_concurrent_claims_of_one_passthrough_device_let_exactly_one_win(
    store: state_store.Store,
) -> None:
    barrier = threading.Barrier(32)
    outcomes: dict[str, str] = {}

    def claim(i: int) -> None:
        barrier.wait()
        try:
            store.begin_plug(make_record(f"v{i}", allocation=pool_alloc("eth10", "passthrough")))
            outcomes[f"v{i}"] = "won"
        except exceptions.PoolDeviceTaken:
            outcomes[f"v{i}"] = "refused"

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [v for v, o in outcomes.items() if o == "won"]
    assert len(winners) == 1 and len(outcomes) == 32
    assert store.pool_holders("test") == {"eth10": winners}


# --- meta -------------------------------------------------------------------------------


def test_meta_survives_a_restart(store: state_store.Store) -> None:
    assert store.meta_get("system-id") is None
    store.meta_set("system-id", "abc")
    store.meta_set("system-id", "def")
    store = reopen(store)
    try:
        assert store.meta_get("system-id") == "def"
    finally:
        store.close()


def test_schema_version_cannot_be_set_by_hand(store: state_store.Store) -> None:
    with pytest.raises(ValueError):
        store.meta_set("schema_version", "99")


# --- reads and writes ---------------------------------------------------------------------


class _Unusable:
    """Stands in for the SQLite connection to prove nobody touches it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the database was used: {name}")


def test_reads_are_served_from_memory(store: state_store.Store) -> None:
    store.begin_plug(make_record("a", iface_id="p1", allocation=pool_alloc("eth10")))
    store.meta_set("k", "v")
    real, store._conn = store._conn, _Unusable()  # type: ignore[assignment]
    try:
        assert store.get("a") is not None
        assert len(store.all()) == 1
        assert len(store.by_iface_id("p1")) == 1
        assert store.pool_holders("test") == {"eth10": ["a"]}
        assert store.meta_get("k") == "v"
    finally:
        store._conn = real


class _FailingCommit:
    """A connection whose COMMIT fails, as on a full or broken disk."""

    def __init__(self, real: sqlite3.Connection) -> None:
        self.real = real

    @property
    def in_transaction(self) -> bool:
        return self.real.in_transaction

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT":
            raise sqlite3.OperationalError("disk I/O error")
        return self.real.execute(sql, *args)


def test_a_failed_commit_is_reported_and_nothing_is_published(store: state_store.Store) -> None:
    store.begin_plug(make_record("a", iface_id="p1"))
    real, store._conn = store._conn, _FailingCommit(store._conn)  # type: ignore[assignment]
    try:
        with pytest.raises(exceptions.StateWriteFailed, match="disk I/O error"):
            store.begin_plug(make_record("b", iface_id="p1"))
        with pytest.raises(exceptions.StateWriteFailed):
            store.set_status({"a": "active"})
    finally:
        store._conn = real
    assert store.get("b") is None
    got = store.get("a")
    assert got is not None and got.iface_status is None
    assert [r.vif_id for r in store.by_iface_id("p1")] == ["a"]
    # The writer's own view was rolled back too: the same writes now succeed.
    store.begin_plug(make_record("b", iface_id="p1"))
    store.set_status({"a": "active"})
    store = reopen(store)
    try:
        assert sorted(r.vif_id for r in store.all()) == ["a", "b"]
    finally:
        store.close()


class _CommitThenFail(_FailingCommit):
    """A COMMIT that reaches the disk but reports an error (EIO from fsync)."""

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        cursor = self.real.execute(sql, *args)
        if sql == "COMMIT":
            raise sqlite3.OperationalError("disk I/O error")
        return cursor


def test_after_a_commit_of_unknown_outcome_the_index_follows_the_disk(
    store: state_store.Store,
) -> None:
    real, store._conn = store._conn, _CommitThenFail(store._conn)  # type: ignore[assignment]
    try:
        with pytest.raises(exceptions.StateWriteFailed):
            store.begin_plug(make_record("a", iface_id="p1"))
    finally:
        store._conn = real
    # The change did land: reads show it and the next step applies to it.
    got = store.get("a")
    assert got is not None and got.lifecycle is Lifecycle.PLUGGING
    store.finish_plug("a", Allocation(plugin="ovs", device="tapa"), iface_status="active")
    assert [r.iface_status for r in store.by_iface_id("p1")] == ["active"]


class _PausedBegin:
    """A connection whose first BEGIN waits, so that other writes pile up behind it."""

    def __init__(self, real: sqlite3.Connection) -> None:
        self.real = real
        self.entered = threading.Event()
        self.release = threading.Event()
        self.paused = False

    @property
    def in_transaction(self) -> bool:
        return self.real.in_transaction

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql.startswith("BEGIN") and not self.paused:
            self.paused = True
            self.entered.set()
            self.release.wait(10)
        return self.real.execute(sql, *args)


def test_a_change_sqlite_refuses_fails_alone(store: state_store.Store) -> None:
    paused = _PausedBegin(store._conn)
    store._conn = paused  # type: ignore[assignment]
    results: dict[str, str] = {}

    def plug(record: VifRecord) -> None:
        try:
            store.begin_plug(record)
            results[record.vif_id] = "ok"
        except exceptions.StateWriteFailed as exc:
            results[record.vif_id] = str(exc)

    first = threading.Thread(target=plug, args=(make_record("first"),))
    first.start()
    assert paused.entered.wait(10)
    # NULL in a NOT NULL column: only SQLite notices.
    bad = make_record("bad", instance_name=None)
    others = [
        threading.Thread(target=plug, args=(r,))
        for r in (make_record("good1"), bad, make_record("good2"))
    ]
    for t in others:
        t.start()
    deadline = time.monotonic() + 10
    while len(store._queue) < 3 and time.monotonic() < deadline:
        time.sleep(0.001)
    paused.release.set()
    for t in [first, *others]:
        t.join()
    store._conn = paused.real
    assert results["first"] == results["good1"] == results["good2"] == "ok"
    assert "NOT NULL" in results["bad"]
    assert store.transactions == 2  # first alone, then good1 + good2 together
    assert store.get("bad") is None
    store = reopen(store)
    try:
        assert sorted(r.vif_id for r in store.all()) == ["first", "good1", "good2"]
    finally:
        store.close()


def test_unencodable_record_is_refused_alone(store: state_store.Store) -> None:
    unencodable = Allocation(plugin="ovs", device="tap1", mode=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.begin_plug(make_record("v1", allocation=unencodable))
    assert store.get("v1") is None
    store.begin_plug(make_record("v1"))
    assert store.get("v1") is not None


def test_close_commits_then_refuses_writes(db_path: str) -> None:
    s = state_store.Store(db_path)
    s.begin_plug(make_record("v1"))
    s.close()
    s.close()  # idempotent
    with pytest.raises(exceptions.StateWriteFailed, match="closed"):
        s.begin_plug(make_record("v2"))
    assert s.get("v1") is not None  # reads still answer from memory
    assert not s._writer.is_alive()


# --- group commit ---------------------------------------------------------------------


def test_200_concurrent_plugs_share_few_transactions(
    store: state_store.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes queued while a commit runs go out together.  The first commit
    is held until every other writer has queued, so the overlap is certain
    on any machine, and the count is exact."""
    n = 200
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []
    commit = store._commit_batch
    first = threading.Event()

    def held_commit(batch: list[Any]) -> None:
        if not first.is_set():
            first.set()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with store._cond:
                    if len(store._queue) + len(batch) >= n:
                        break
                time.sleep(0.005)
        commit(batch)

    monkeypatch.setattr(store, "_commit_batch", held_commit)
    before = store.transactions

    def plug(i: int) -> None:
        barrier.wait()
        try:
            store.begin_plug(make_record(f"vif-{i:03d}", iface_id=f"port-{i % 7}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=plug, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.all()) == n
    # Each caller returned only after its commit: the held one, then one for
    # everything queued behind it.
    assert store.transactions - before <= 2, store.transactions - before
    store = reopen(store)
    try:
        got = {r.vif_id: r for r in store.all()}
        assert sorted(got) == [f"vif-{i:03d}" for i in range(n)]
        assert all(r.lifecycle is Lifecycle.PLUGGING for r in got.values())
        assert sum(len(store.by_iface_id(f"port-{k}")) for k in range(7)) == n
    finally:
        store.close()


def test_1000_vifs_from_256_threads_plug_and_unplug(store: state_store.Store) -> None:
    """The daemon's target load, end to end through every write; quick on any disk."""
    n, workers = 1000, 256
    ids = [f"vif-{i:04d}" for i in range(n)]
    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    for vif_id in ids:
        todo.put(vif_id)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            while True:
                try:
                    vif_id = todo.get_nowait()
                except queue.Empty:
                    return
                store.begin_plug(make_record(vif_id, iface_id=vif_id))
                store.finish_plug(
                    vif_id,
                    Allocation(plugin="ovs", device=vif_id[:15], bridge="br-int"),
                    iface_status="active",
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert errors == []
    assert all(r.lifecycle is Lifecycle.PLUGGED for r in store.all())
    assert store.transactions < 2 * n / 4, (store.transactions, elapsed)  # 2 writes a VIF
    store = reopen(store)
    try:
        assert len(store.all()) == n
    finally:
        store.close()


# --- crash safety --------------------------------------------------------------------------

_CHILD = textwrap.dedent("""
    import sys, threading
    from vifplug.records import Allocation, Lifecycle, VifRecord
    from vifplug.state import store as state_store

    path, start, nthreads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    store = state_store.Store(path)
    out = threading.Lock()

    def say(state, vif_id):
        with out:
            sys.stdout.write(f"{state} {vif_id}\\n")
            sys.stdout.flush()

    def work(t):
        i = start + t
        while True:
            vif_id = f"vif-{i:07d}"
            store.begin_plug(VifRecord(
                vif_id=vif_id, plugin="ovs", obj_name="VIFOpenVSwitch", obj_version="1.2",
                instance_uuid="u", instance_name="n", request_json=f'{{"i":{i}}}',
                request_digest="d", lifecycle=Lifecycle.PLUGGING, iface_id=f"p{i % 5}"))
            say("plugging", vif_id)
            store.finish_plug(vif_id, Allocation(plugin="ovs", device=f"tap{i}"),
                              iface_status="active")
            say("plugged", vif_id)
            if i % 3 == 0:
                store.begin_unplug(vif_id)
                say("unplugging", vif_id)
                store.finish_unplug(vif_id)
                say("gone", vif_id)
            i += nthreads

    for t in range(nthreads):
        threading.Thread(target=work, args=(t,), daemon=True).start()
    threading.Event().wait()
""")

# Each acknowledged state, and the one an operation in flight may have reached.
_NEXT = {
    None: "plugging",
    "plugging": "plugged",
    "plugged": "unplugging",
    "unplugging": "gone",
    "gone": "gone",
}


def _run_child_and_kill(path: str, script: Path, start: int, min_acks: int) -> list[str]:
    """Run the writer, SIGKILL it after ``min_acks`` acknowledgements, return all it printed."""
    proc = subprocess.Popen(
        [sys.executable, str(script), path, str(start), "8"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.endswith("\n"):  # a line cut by the kill was never acknowledged
                lines.put(line.rstrip("\n"))
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    acks: list[str] = []
    try:
        while len(acks) < min_acks:
            line = lines.get(timeout=30)
            assert line is not None, "the writer exited early"
            acks.append(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    while (line := lines.get(timeout=30)) is not None:
        acks.append(line)
    reader.join(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return acks


def test_every_acknowledged_write_survives_sigkill(tmp_path: Path) -> None:
    path = str(tmp_path / "state" / "vifplug.sqlite")
    script = tmp_path / "writer.py"
    script.write_text(_CHILD)
    acked: dict[str, str] = {}
    for round_no, min_acks in enumerate((20, 37, 61, 25)):
        for line in _run_child_and_kill(path, script, round_no * 1_000_000, min_acks):
            state, vif_id = line.split()
            acked[vif_id] = state
        assert len(acked) >= 5
        with state_store.Store(path) as s:
            found = {r.vif_id: r.lifecycle.value for r in s.all()}
            assert s.transactions == 0
        for vif_id, state in acked.items():
            actual = found.get(vif_id, "gone")
            # Acknowledged means on disk; the next step may also be, if it was in flight.
            assert actual in (state, _NEXT[state]), (vif_id, state, actual)
        for vif_id, actual in found.items():
            if vif_id not in acked:  # only a begin_plug in flight can be unacknowledged
                assert actual == "plugging", (vif_id, actual)


def test_a_record_is_never_visible_before_it_is_durable(store: state_store.Store) -> None:
    paused = _PausedBegin(store._conn)
    store._conn = paused  # type: ignore[assignment]
    t = threading.Thread(target=store.begin_plug, args=(make_record("v1"),))
    t.start()
    try:
        assert paused.entered.wait(10)
        assert store.get("v1") is None
    finally:
        paused.release.set()
        t.join()
        store._conn = paused.real
    assert store.get("v1") is not None


def test_request_is_stored_as_canonical_json(store: state_store.Store) -> None:
    record = make_record("v1")
    store.begin_plug(record)
    conn = sqlite3.connect(store.path)
    (text,) = conn.execute("SELECT request_json FROM vifs").fetchone()
    conn.close()
    assert text == json.dumps(record.request, sort_keys=True, separators=(",", ":"))
    assert text == record.request_json
    assert hashlib.sha256(text.encode()).hexdigest() == record.request_digest


def test_two_vifs_never_share_a_device_or_port(store: state_store.Store) -> None:
    ovs = Allocation(
        plugin="ovs",
        device="tapshared",
        bridge="br-int",
        port="tapshared",
        created_devices=("tapshared",),
        created_port=True,
    )
    store.begin_plug(make_record("a", allocation=ovs))
    with pytest.raises(exceptions.DeviceInUse):
        store.begin_plug(make_record("b", allocation=ovs))
    assert store.get("b") is None
    # A linux bridge VIFs sit on is shared, not owned: it does not conflict.
    lb1 = Allocation(
        plugin="linux_bridge", device="tapone", port="brshared", created_devices=("tapone",)
    )
    lb2 = Allocation(
        plugin="linux_bridge", device="taptwo", port="brshared", created_devices=("taptwo",)
    )
    store.begin_plug(make_record("c", allocation=lb1))
    store.begin_plug(make_record("d", allocation=lb2))
    # Once the first VIF is gone, its names are free again.
    store.begin_unplug("a")
    store.finish_unplug("a")
    store.begin_plug(make_record("b", allocation=ovs))


def test_private_mode_with_8021qbh_holds_its_device_alone(store: state_store.Store) -> None:
    qbh = Allocation(
        plugin="direct",
        device="mvtqbh0",
        network="test",
        pool_device="eth10",
        mode="private",
        virtualport={"type": "802.1Qbh", "profile_id": "p"},
    )
    store.begin_plug(make_record("q", allocation=qbh))
    with pytest.raises(exceptions.PoolDeviceTaken):
        store.begin_plug(make_record("r", allocation=pool_alloc("eth10", mode="private")))
