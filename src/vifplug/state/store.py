"""The persistent state of vifplugd: what it was asked, what it did, what is in flight.

Why it looks like this:

* **Nothing acknowledged is lost.**  Every write method returns only after
  its change is committed to SQLite in WAL mode with ``synchronous=FULL`` (the
  WAL is fsynced at each commit), so the daemon may be killed at any moment.
  The lifecycle column is the intent log: ``plugging``/``unplugging`` is
  written before the system is touched, ``plugged``/row deleted after.  At
  start-up every record whose lifecycle is not ``plugged`` is an operation a
  crash interrupted, which the reconciler completes or undoes.  One write
  may be waited for later (``queue_begin_plug``): a plug's intent, while its
  tap is made in a form the kernel removes unless the intent is durable.
* **Group commit.**  One fsync per VIF would cap the daemon at a few hundred
  plugs a second and make 256 concurrent requests queue behind each other.
  Instead a single writer thread owns the write connection; callers from any
  thread submit a change and block; the writer takes everything pending,
  applies it in ONE transaction, commits (one fsync), and wakes all of them.
  The more callers wait, the more each commit carries, so the cost per VIF
  falls under load instead of growing.
* **Reads never touch the disk.**  An in-memory index (by VIF id, by
  iface-id, by pool device) is loaded at open and updated by the writer only
  after a commit succeeded, so readers see exactly what is durable and
  ``get``/``by_iface_id``/``pool_holders`` cost O(1) whatever the number of VIFs.
* **One source of truth for pools.**  Which VIF holds which physical device
  is derived from each VIF's allocation (``network`` + ``pool_device``), never
  kept in a second table that could disagree with it.  The writer, being the
  one place where changes are serialized, also refuses to give a device that
  a VIF needs alone (records.needs_device_alone) to two VIFs, so allocators need no
  lock held across an fsync.
* **One daemon per database.**  An exclusive ``flock`` on ``<path>.lock``
  stops a second vifplugd with the same ``state_dir`` from managing the same
  VIFs; the kernel releases it when the process dies, however it dies.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from vifplug import exceptions, threadnames
from vifplug.records import Allocation, Lifecycle, Teaming, VifRecord, needs_device_alone
from vifplug.state import codec, migrations

LOG = logging.getLogger(__name__)

#: The database file name under ``state_dir``.
DB_FILENAME = "vifplug.sqlite"

#: Pool modes in which a physical device serves one VIF alone (as in libvirt).
_T = TypeVar("_T")

# SQL errors that concern one change (a NULL in a NOT NULL column, a value
# SQLite cannot bind) rather than the database: only that change is refused.
_CHANGE_ERRORS = (
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    sqlite3.DataError,
)


def path_in(state_dir: str) -> str:
    """The database path the daemon uses under ``state_dir``."""
    return os.path.join(state_dir, DB_FILENAME)


# --- the in-memory index --------------------------------------------------------


class _Index:
    """Records by VIF id, plus the two secondary lookups the service needs.

    Dicts whose values are ``None`` serve as insertion-ordered sets, so
    listings are stable.  Not thread-safe: the store guards it.
    """

    __slots__ = ("by_iface", "meta", "names", "pool", "vifs")

    def __init__(self) -> None:
        self.vifs: dict[str, VifRecord] = {}
        self.names: dict[str, str] = {}  # device or OVS port name -> the VIF using it
        self.by_iface: dict[str, dict[str, None]] = {}
        self.pool: dict[str, dict[str, dict[str, None]]] = {}  # network -> device -> vif ids
        self.meta: dict[str, str] = {}

    def copy(self) -> _Index:
        other = _Index()
        other.vifs = dict(self.vifs)
        other.by_iface = {k: dict(v) for k, v in self.by_iface.items()}
        other.pool = {
            net: {dev: dict(ids) for dev, ids in devs.items()} for net, devs in self.pool.items()
        }
        other.meta = dict(self.meta)
        other.names = dict(self.names)
        return other

    def holders(self, network: str, device: str) -> dict[str, None]:
        return self.pool.get(network, {}).get(device, {})

    def put(self, record: VifRecord) -> VifRecord | None:
        """Insert or replace; returns the record replaced.

        The secondary lookups change only when the record's keys do, so a VIF
        keeps its place in them across status and lifecycle changes.
        """
        old = self.vifs.get(record.vif_id)
        self.vifs[record.vif_id] = record
        if old is None:
            self._link_iface(record)
            self._link_pool(record)
            self._link_names(record)
            return old
        if _names(old) != _names(record):
            self._unlink_names(old)
            self._link_names(record)
        if old.iface_id != record.iface_id:
            self._unlink_iface(old)
            self._link_iface(record)
        if _pool_key(old) != _pool_key(record):
            self._unlink_pool(old)
            self._link_pool(record)
        return old

    def remove(self, vif_id: str) -> VifRecord | None:
        old = self.vifs.pop(vif_id, None)
        if old is not None:
            self._unlink_iface(old)
            self._unlink_pool(old)
            self._unlink_names(old)
        return old

    def _link_names(self, record: VifRecord) -> None:
        for name in _names(record):
            self.names[name] = record.vif_id

    def _unlink_names(self, record: VifRecord) -> None:
        for name in _names(record):
            if self.names.get(name) == record.vif_id:
                del self.names[name]

    def _link_iface(self, record: VifRecord) -> None:
        if record.iface_id is not None:
            self.by_iface.setdefault(record.iface_id, {})[record.vif_id] = None

    def _link_pool(self, record: VifRecord) -> None:
        key = _pool_key(record)
        if key is not None:
            devices = self.pool.setdefault(key[0], {})
            devices.setdefault(key[1], {})[record.vif_id] = None

    def _unlink_iface(self, record: VifRecord) -> None:
        if record.iface_id is not None:
            ids = self.by_iface.get(record.iface_id)
            if ids is not None:
                ids.pop(record.vif_id, None)
                if not ids:
                    del self.by_iface[record.iface_id]

    def _unlink_pool(self, record: VifRecord) -> None:
        key = _pool_key(record)
        if key is not None:
            devices = self.pool.get(key[0])
            if devices is not None:
                ids = devices.get(key[1])
                if ids is not None:
                    ids.pop(record.vif_id, None)
                    if not ids:
                        del devices[key[1]]
                if not devices:
                    del self.pool[key[0]]


def _names(record: VifRecord) -> frozenset[str]:
    """The host device and OVS port names a VIF has to itself (a linux bridge
    it sits on is shared, so it is not among them)."""
    alloc = record.allocation
    if alloc is None:
        return frozenset()
    names = {alloc.device, *alloc.created_devices}
    if alloc.bridge is not None and alloc.port:
        names.add(alloc.port)
    return frozenset(names)


def _check_names(ix: _Index, record: VifRecord) -> None:
    """Two VIFs never share a device or port: the second is refused before it
    changes anything (it would otherwise adopt, then delete, the first's)."""
    for name in sorted(_names(record)):
        holder = ix.names.get(name)
        if holder is not None and holder != record.vif_id:
            raise exceptions.DeviceInUse(device=name, reason=f"VIF {holder} on this host uses it")


def _pool_key(record: VifRecord) -> tuple[str, str] | None:
    alloc = record.allocation
    if alloc is None or alloc.network is None or alloc.pool_device is None:
        return None
    return alloc.network, alloc.pool_device


# --- changes and the operations that produce them -------------------------------


@dataclasses.dataclass(frozen=True)
class _Put:
    record: VifRecord
    new: bool


@dataclasses.dataclass(frozen=True)
class _Delete:
    vif_id: str


@dataclasses.dataclass(frozen=True)
class _SetMeta:
    key: str
    value: str


_Change = _Put | _Delete | _SetMeta
# How to take a change back: ("vif", vif_id, previous record) or ("meta", key, previous value).
_Undo = tuple[str, str, VifRecord | str | None]

# An operation looks at the state as committed plus what earlier operations of
# the same transaction changed, checks it, and returns the changes to make and
# the value for its caller.  It must not modify the index it is given.
_Plan = Callable[[_Index, float], tuple[list[_Change], _T]]


class _Op(Generic[_T]):
    """One caller's request to the writer, and the slot its answer comes back in."""

    __slots__ = ("done", "error", "outcome", "plan")

    def __init__(self, plan: _Plan[_T]) -> None:
        self.plan = plan
        self.done = threading.Event()
        self.outcome: tuple[_T] | None = None
        self.error: BaseException | None = None


class Pending(Generic[_T]):
    """A change handed to the writer and not waited for yet.

    Why: a plug's intent takes a trip to the writer thread and an fsync
    (0.6 ms on the plug's path); a plugin that can make its device so that it
    vanishes unless kept (a tap not yet persistent) makes it meanwhile, and
    waits only before keeping it.  ``wait`` returns the change's result once
    it is durable, or raises why it was refused, on every call."""

    __slots__ = ("_op",)

    def __init__(self, op: _Op[_T]) -> None:
        self._op = op

    def wait(self) -> _T:
        op = self._op
        op.done.wait()
        if op.error is not None:
            raise op.error
        assert op.outcome is not None
        return op.outcome[0]


# --- the store --------------------------------------------------------------------


class Store:
    """The VIF state database and its in-memory index.

    Thread-safe.  Write methods block until their change is durable, or raise
    (a refused step changes nothing; on ``StateWriteFailed`` see its
    docstring); reads are served from memory and show only committed state.
    Raises from ``vifplug.exceptions``: ``VIFNotFound`` for an unknown VIF,
    ``VIFLifecycleError`` for a step out of order, ``PoolDeviceTaken`` for an
    exclusive pool device given twice, ``StateWriteFailed`` when the database
    could not commit (or the store is closed).
    """

    def __init__(self, path: str) -> None:
        """Open or create the database at ``path``, migrate it, load the index.

        Creates the parent directory with mode 0700 and the file with 0600.
        Raises ``StateSchemaTooNew`` for a database written by a newer schema
        (left untouched) and ``StateUnavailable`` when the file is not a
        vifplug database, holds unreadable records, or another process has it.
        """
        self.path = os.path.abspath(path)
        #: Write transactions committed since open: one per group commit.
        self.transactions = 0
        #: Why the last commit failed as a whole (the disk, not one change), or
        #: None since the last commit that succeeded: for readiness.
        self.write_error: str | None = None
        self._lock = threading.Lock()  # guards _published
        self._cond = threading.Condition(threading.Lock())  # guards _queue, _closing
        self._queue: list[_Op[Any]] = []
        self._closing = False  # no more submissions (also set if the writer dies)
        self._close_started = False
        _make_parent(self.path)
        self._lock_fd = _take_lock(self.path)
        try:
            self._conn = _open(self.path)
            try:
                self._staged = _load(self._conn, self.path)
            except BaseException:
                self._conn.close()
                raise
        except BaseException:
            os.close(self._lock_fd)
            raise
        # The writer's own copy, ahead of _published while a transaction is open.
        self._published = self._staged.copy()
        self._writer = threadnames.Thread(
            target=self._run, name="vifplug-state-writer", daemon=True
        )
        self._writer.start()
        LOG.info(
            "state database %s open: %d VIFs, schema %d",
            self.path,
            len(self._published.vifs),
            migrations.SCHEMA_VERSION,
        )

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Commit what is pending, stop the writer, release the database.

        Idempotent.  Writes submitted afterwards raise ``StateWriteFailed``;
        reads keep answering from memory.
        """
        with self._cond:
            first = not self._close_started
            self._close_started = True
            self._closing = True
            self._cond.notify_all()
        self._writer.join()
        if first:
            self._conn.close()
            os.close(self._lock_fd)

    # --- reads: memory only ----------------------------------------------------

    def get(self, vif_id: str) -> VifRecord | None:
        """The committed record of ``vif_id``, or None."""
        with self._lock:
            return self._published.vifs.get(vif_id)

    @property
    def writer_alive(self) -> bool:
        """Whether the writer thread runs (it stops only on close or on a bug):
        the watchdog's witness that writes can still become durable."""
        return self._writer.is_alive()

    def all(self) -> list[VifRecord]:
        """Every committed record, oldest first."""
        with self._lock:
            return list(self._published.vifs.values())

    def by_iface_id(self, iface_id: str) -> list[VifRecord]:
        """The records carrying ``iface_id`` (usually one; two during a local migration)."""
        with self._lock:
            ids = self._published.by_iface.get(iface_id, {})
            return [self._published.vifs[v] for v in ids]

    def pool_holders(self, network: str) -> dict[str, list[str]]:
        """Device -> ids of the VIFs holding it, for the devices of ``network`` that are held.

        A VIF holds its device from the ``begin_plug`` or ``finish_plug`` that
        names it until ``finish_unplug``, whatever its lifecycle.
        """
        with self._lock:
            devices = self._published.pool.get(network, {})
            return {dev: list(ids) for dev, ids in devices.items()}

    def meta_get(self, key: str) -> str | None:
        with self._lock:
            return self._published.meta.get(key)

    # --- writes: durable before they return ------------------------------------

    def begin_plug(self, record: VifRecord) -> None:
        """Record the intent to plug ``record`` (lifecycle PLUGGING), before the system changes.

        Stamps ``created_at`` (unless set) and ``updated_at``.  Raises
        ``VIFLifecycleError`` if the VIF id is already recorded (whatever its
        lifecycle: the service decides idempotency before calling), and
        ``PoolDeviceTaken`` if ``record.allocation`` names an exclusive pool
        device another VIF holds.
        """
        self.queue_begin_plug(record).wait()

    def queue_begin_plug(self, record: VifRecord) -> Pending[None]:
        """``begin_plug`` handed to the writer without waiting: the caller
        waits (``Pending.wait``) before anything it changes can outlive it."""

        def plan(ix: _Index, now: float) -> tuple[list[_Change], None]:
            old = ix.vifs.get(record.vif_id)
            if old is not None:
                raise exceptions.VIFLifecycleError(
                    vif_id=record.vif_id, lifecycle=old.lifecycle.value, operation="begin a plug"
                )
            new = record.with_changes(
                lifecycle=Lifecycle.PLUGGING, created_at=record.created_at or now, updated_at=now
            )
            _check_pool(ix, new)
            _check_names(ix, new)
            return [_Put(new, new=True), *_pair(ix, new, now)], None

        return self._enqueue(plan)

    def finish_plug(
        self, vif_id: str, allocation: Allocation, *, iface_status: str | None
    ) -> VifRecord:
        """Record the outcome of a plug: lifecycle PLUGGED with its allocation.

        Allowed from PLUGGING and (for a re-plug at reconciliation) PLUGGED;
        raises ``VIFLifecycleError`` while an unplug is in flight, and
        ``VIFNotFound``/``PoolDeviceTaken``.
        """

        def plan(ix: _Index, now: float) -> tuple[list[_Change], VifRecord]:
            old = _require(ix, vif_id)
            if old.lifecycle is Lifecycle.UNPLUGGING:
                raise exceptions.VIFLifecycleError(
                    vif_id=vif_id, lifecycle=old.lifecycle.value, operation="finish a plug"
                )
            new = old.with_changes(
                lifecycle=Lifecycle.PLUGGED,
                allocation=allocation,
                iface_status=iface_status,
                updated_at=now,
            )
            _check_pool(ix, new)
            return [_Put(new, new=False)], new

        return self._submit(plan)

    def begin_unplug(self, vif_id: str) -> VifRecord:
        """Record the intent to unplug (lifecycle UNPLUGGING), before the system changes.

        From any lifecycle (a failed plug is cleaned up this way too);
        idempotent.  The VIF keeps its pool device until ``finish_unplug``.
        Raises ``VIFNotFound``, and ``TeamingMemberPlugged`` for the
        persistent member of a pair whose transient member is recorded.
        """

        def plan(ix: _Index, now: float) -> tuple[list[_Change], VifRecord]:
            old = _require(ix, vif_id)
            if old.lifecycle is Lifecycle.UNPLUGGING:
                return [], old
            transient = _transient_of(ix, old)
            if transient is not None:
                raise exceptions.TeamingMemberPlugged(vif_id=vif_id, peer_id=transient.vif_id)
            new = old.with_changes(lifecycle=Lifecycle.UNPLUGGING, updated_at=now)
            return [_Put(new, new=False)], new

        return self._submit(plan)

    def finish_unplug(self, vif_id: str) -> None:
        """Remove the record once the system no longer has the VIF; frees its pool device.

        Raises ``VIFNotFound``, and ``VIFLifecycleError`` unless
        ``begin_unplug`` was recorded first (intent before change, always).
        """

        def plan(ix: _Index, now: float) -> tuple[list[_Change], None]:
            old = _require(ix, vif_id)
            if old.lifecycle is not Lifecycle.UNPLUGGING:
                raise exceptions.VIFLifecycleError(
                    vif_id=vif_id, lifecycle=old.lifecycle.value, operation="finish an unplug"
                )
            return [_Delete(vif_id), *_unpair(ix, old, now)], None

        self._submit(plan)

    def set_status(self, changes: dict[str, str | None]) -> None:
        """Set the iface-status of several VIFs in one transaction: all or none.

        Raises ``VIFNotFound`` (and changes nothing) if any id is unknown.
        """
        if not changes:
            return
        wanted = dict(changes)

        def plan(ix: _Index, now: float) -> tuple[list[_Change], None]:
            out: list[_Change] = []
            for vif_id, status in wanted.items():
                old = _require(ix, vif_id)
                if old.iface_status != status:
                    out.append(
                        _Put(old.with_changes(iface_status=status, updated_at=now), new=False)
                    )
            return out, None

        self._submit(plan)

    def meta_set(self, key: str, value: str) -> None:
        """Durably set a host fact (e.g. ``system-id``); ``schema_version`` is reserved."""
        if key == "schema_version":
            raise ValueError("schema_version is managed by the migrations")

        def plan(ix: _Index, now: float) -> tuple[list[_Change], None]:
            if ix.meta.get(key) == value:
                return [], None
            return [_SetMeta(key, value)], None

        self._submit(plan)

    # --- the writer ------------------------------------------------------------

    def _submit(self, plan: _Plan[_T]) -> _T:
        return self._enqueue(plan).wait()

    def _enqueue(self, plan: _Plan[_T]) -> Pending[_T]:
        op: _Op[_T] = _Op(plan)
        with self._cond:
            if self._closing:
                raise exceptions.StateWriteFailed(path=self.path, reason="the store is closed")
            self._queue.append(op)
            self._cond.notify()
        return Pending(op)

    def _run(self) -> None:
        """Writer thread: take everything pending, commit it as one transaction, repeat."""
        batch: list[_Op[Any]] = []
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._closing:
                        self._cond.wait()
                    batch, self._queue = self._queue, []
                if not batch:
                    return  # closing and drained
                self._commit_batch(batch)
                batch = []
        except BaseException as exc:
            # Never leave a caller waiting forever, even on a bug in here.
            LOG.exception("state writer stopped")
            self.write_error = f"the state writer stopped: {exc!r}"
            with self._cond:
                self._closing = True
                batch += self._queue
                self._queue = []
            for op in batch:
                if not op.done.is_set():
                    op.error = exceptions.StateWriteFailed(path=self.path, reason=repr(exc))
                    op.done.set()
            raise

    def _commit_batch(self, batch: list[_Op[Any]]) -> None:
        ops = list(batch)
        while ops:
            refused = self._try_commit(ops)
            if refused is None:
                break
            # One change SQLite refused: answer it and commit the others without it.
            ops.remove(refused)
        for op in batch:
            op.done.set()

    def _try_commit(self, ops: list[_Op[Any]]) -> _Op[Any] | None:
        """Apply ``ops`` in one transaction and publish it.

        Returns None when every op got its answer (result or error), or the op
        whose SQL was refused after rolling everything back, for a retry
        without it.
        """
        conn = self._conn
        now = time.time()
        undo: list[_Undo] = []
        applied: list[_Change] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in ops:
                op.outcome, op.error = None, None
                try:
                    changes, result = op.plan(self._staged, now)
                    statements = [_statement(c) for c in changes]
                except Exception as exc:  # the op is refused; the others go on
                    op.error = exc
                    continue
                try:
                    for sql, params in statements:
                        if conn.execute(sql, params).rowcount != 1:
                            raise sqlite3.IntegrityError(
                                f"no row for {params[-1]!r}: index and database disagree"
                            )
                except _CHANGE_ERRORS as exc:
                    conn.execute("ROLLBACK")
                    self._undo(undo)
                    op.error = exceptions.StateWriteFailed(path=self.path, reason=str(exc))
                    return op
                for change in changes:
                    undo.append(self._apply(self._staged, change))
                applied.extend(changes)
                op.outcome = (result,)
            conn.execute("COMMIT" if applied else "ROLLBACK")
        except Exception as exc:
            LOG.error("state commit of %d changes failed: %s", len(ops), exc)
            self.write_error = str(exc) or type(exc).__name__
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                LOG.exception("state rollback failed")
            self._undo(undo)
            self._resync()
            failure = exceptions.StateWriteFailed(path=self.path, reason=str(exc))
            for op in ops:
                if op.outcome is not None or op.error is None:
                    op.outcome, op.error = None, failure
            return None
        if applied:
            self.transactions += 1
            self.write_error = None
            with self._lock:
                for change in applied:
                    self._apply(self._published, change)
        return None

    def _resync(self) -> None:
        """After a failed commit, believe the disk rather than the undo log.

        A commit that fails in its fsync (EIO) may or may not be on disk; the
        callers are told it failed, and the index must show whichever it is
        so that it never disagrees with the rows it will update next.
        """
        try:
            fresh = _load(self._conn, self.path)
        except exceptions.VifplugError:
            LOG.exception("state re-read after a failed commit failed; keeping the index")
            return
        self._staged = fresh
        with self._lock:
            self._published = fresh.copy()

    @staticmethod
    def _apply(ix: _Index, change: _Change) -> _Undo:
        """Apply ``change`` to ``ix``; returns what undoes it."""
        if isinstance(change, _Put):
            return ("vif", change.record.vif_id, ix.put(change.record))
        if isinstance(change, _Delete):
            return ("vif", change.vif_id, ix.remove(change.vif_id))
        old_value = ix.meta.get(change.key)
        ix.meta[change.key] = change.value
        return ("meta", change.key, old_value)

    def _undo(self, undo: list[_Undo]) -> None:
        """Roll the writer's staged index back to the last commit."""
        for kind, key, old in reversed(undo):
            if kind == "vif":
                if old is None:
                    self._staged.remove(key)
                else:
                    assert isinstance(old, VifRecord)
                    self._staged.put(old)
            elif old is None:
                self._staged.meta.pop(key, None)
            else:
                assert isinstance(old, str)
                self._staged.meta[key] = old
        undo.clear()


# --- helpers ----------------------------------------------------------------------


def _require(ix: _Index, vif_id: str) -> VifRecord:
    record = ix.vifs.get(vif_id)
    if record is None:
        raise exceptions.VIFNotFound(vif_id=vif_id)
    return record


def _pair(ix: _Index, record: VifRecord, now: float) -> list[_Change]:
    """A transient member joins its persistent member's pair, or is refused.

    Checked here, in the writer, because this is where changes are
    serialized: the pair is checked and both rows are written in one
    transaction, so a transient member is never recorded beside a persistent
    member that is going away, nor two beside one."""
    if record.teaming_type is not Teaming.TRANSIENT or record.teaming_peer is None:
        return []
    peer_id = record.teaming_peer
    peer = ix.vifs.get(peer_id)
    if peer is None or peer.lifecycle is not Lifecycle.PLUGGED:
        state = "not plugged on this host" if peer is None else f"{peer.lifecycle.value}"
        raise exceptions.TeamingPeerNotPlugged(vif_id=record.vif_id, peer_id=peer_id, state=state)
    if peer.teaming_type is not Teaming.PERSISTENT:
        role = "transient" if peer.teaming_type else "no"
        raise exceptions.TeamingMismatch(
            vif_id=record.vif_id,
            peer_id=peer_id,
            reason=f"it was plugged with {role} teaming, not as a persistent member",
        )
    other = _transient_of(ix, peer)
    if other is not None and other.vif_id != record.vif_id:
        raise exceptions.TeamingPeerTaken(
            vif_id=record.vif_id, peer_id=peer_id, other_id=other.vif_id
        )
    if (peer.mac or "").lower() != (record.mac or "").lower():
        raise exceptions.TeamingMismatch(
            vif_id=record.vif_id,
            peer_id=peer_id,
            reason=f"its MAC is {record.mac}, the persistent member's is {peer.mac}",
        )
    return [_Put(peer.with_changes(teaming_peer=record.vif_id, updated_at=now), new=False)]


def _transient_of(ix: _Index, record: VifRecord) -> VifRecord | None:
    """The recorded transient member of persistent member ``record``, if any."""
    if record.teaming_type is not Teaming.PERSISTENT or record.teaming_peer is None:
        return None
    peer = ix.vifs.get(record.teaming_peer)
    if peer is None or peer.teaming_peer != record.vif_id:
        return None
    return peer


def _unpair(ix: _Index, record: VifRecord, now: float) -> list[_Change]:
    """A transient member that goes leaves its persistent member unpaired."""
    if record.teaming_type is not Teaming.TRANSIENT or record.teaming_peer is None:
        return []
    peer = ix.vifs.get(record.teaming_peer)
    if peer is None or peer.teaming_peer != record.vif_id:
        return []
    return [_Put(peer.with_changes(teaming_peer=None, updated_at=now), new=False)]


def _check_pool(ix: _Index, record: VifRecord) -> None:
    """Refuse to share a pool device when either side needs it alone.

    O(1): by this very rule a device with an exclusive holder has no other
    holder, so looking at the first other holder is enough.
    """
    key = _pool_key(record)
    if key is None:
        return
    assert record.allocation is not None
    for holder_id in ix.holders(*key):
        if holder_id == record.vif_id:
            continue
        holder = ix.vifs[holder_id].allocation
        if needs_device_alone(record.allocation.mode, record.allocation.virtualport) or (
            holder is not None and needs_device_alone(holder.mode, holder.virtualport)
        ):
            raise exceptions.PoolDeviceTaken(
                device=key[1], network=key[0], holder=holder_id, vif_id=record.vif_id
            )
        return


def _statement(change: _Change) -> tuple[str, tuple[Any, ...]]:
    """SQL and parameters for one change; encoding errors raise here, before any SQL runs."""
    if isinstance(change, _Put):
        if change.new:
            return codec.INSERT_SQL, codec.insert_params(change.record)
        return codec.UPDATE_SQL, codec.update_params(change.record)
    if isinstance(change, _Delete):
        return codec.DELETE_SQL, (change.vif_id,)
    return (
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (change.key, change.value),
    )


def _make_parent(path: str) -> None:
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        os.makedirs(parent, mode=0o700, exist_ok=True)
        os.chmod(parent, 0o700)  # makedirs' mode is filtered by the umask
    # Create the file ourselves so that it is 0600 (SQLite would use 0644);
    # SQLite gives the -wal and -shm files the same mode.
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))


def _take_lock(path: str) -> int:
    lock_path = path + ".lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise exceptions.StateUnavailable(
            path=path,
            reason=f"another process holds {lock_path}; is a second vifplugd "
            "using the same state_dir?",
        ) from None
    return fd


def _open(path: str) -> sqlite3.Connection:
    """Connect, refuse a database we must not touch, then set it up and migrate it."""
    # isolation_level=None: we issue BEGIN/COMMIT ourselves.  The connection is
    # handed to the writer thread after start-up and used by it alone.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    try:
        version = migrations.read_version(conn, path=path)  # reads only
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            raise exceptions.StateUnavailable(path=path, reason=str(exc)) from exc
        if str(mode).lower() != "wal":
            raise exceptions.StateUnavailable(
                path=path, reason=f"it cannot use write-ahead logging (journal mode {mode})"
            )
        if version < migrations.SCHEMA_VERSION:
            LOG.info(
                "migrating state database %s from schema %d to %d",
                path,
                version,
                migrations.SCHEMA_VERSION,
            )
            migrations.upgrade(conn, path=path, from_version=version)
            _fsync_dir(os.path.dirname(path))
    except BaseException:
        conn.close()
        raise
    return conn


def _fsync_dir(directory: str) -> None:
    """Make a new database file's directory entry durable, not just its content."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _load(conn: sqlite3.Connection, path: str) -> _Index:
    """Read every record and meta value; refuse the database if any record is unreadable.

    Skipping a record would forget a VIF (and leak its devices), so one bad
    row stops the start-up with a message naming it.
    """
    ix = _Index()
    try:
        rows: Iterable[Any] = conn.execute(codec.SELECT_SQL).fetchall()
        ix.meta = {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM meta")}
    except sqlite3.Error as exc:
        raise exceptions.StateUnavailable(path=path, reason=str(exc)) from exc
    for row in rows:
        try:
            ix.put(codec.record_from_row(row))
        except codec.FormatTooNew as exc:
            raise exceptions.StateSchemaTooNew(
                path=path,
                what=f"allocation format (VIF {row[0]})",
                found=exc.found,
                supported=exc.supported,
            ) from exc
        except (ValueError, TypeError, KeyError) as exc:
            raise exceptions.StateUnavailable(
                path=path, reason=f"the record of VIF {row[0]} is unreadable: {exc}"
            ) from exc
    return ix
