"""The IDL connection and the thread that owns it.

Shape (from ovsdbapp, minus its faults): one thread runs ``Idl.run()`` in a
loop, woken by the IDL's own poller and by a pipe that other threads write to
when they submit work.  Unlike ovsdbapp, everything pending when a
transaction can start goes into that one transaction (``max_batch`` at most),
and nobody waits for ovs-vswitchd inside this thread: callers wait for
``ofport`` through row notifications (``wait_interface``).

A write function is idempotent ("make it so"), so a transaction that comes
back TRY_AGAIN (a verify failed, or the server went away mid-commit) is simply
rebuilt from fresh data and committed again once the server is back.  What
the server acknowledged is on its disk; nothing needs redoing after a
reconnect except what was still pending.

Each function that raises while its transaction is being built fails only
its own caller: the transaction is thrown away and rebuilt without it, so a
bad request never leaves half its changes in someone else's commit.

Batches are clocked by ovs-vswitchd, the way TCP's acknowledgements clock a
sender: every writing transaction increments ``next_cfg``, and the next batch
waits (at most ``hold_max`` seconds) until ovs-vswitchd reports the previous
one applied in ``cur_cfg``.  ovs-vswitchd reconfigures its bridges once per
transaction, so whatever arrives while it is busy is better sent together
than one reconfiguration each.  Nobody waits for ``cur_cfg`` otherwise; it is
only a reason to hold the queue, observed through IDL updates.  When
ovs-vswitchd does not answer within ``hold_max`` (it is restarting, or there
is none), batches are not held until it answers again.

Batches also wait for writes that are on their way: a caller that will
submit shortly (a plug creating its tap first) says so with ``expecting()``,
and while any such caller is still preparing, the queue is held for at most
``gather_max`` seconds from the oldest queued write.  A lone plug is never
held (nobody else is expected); a burst of plugs goes out as one transaction
instead of one per arrival.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

import ovs.db.idl
import ovs.poller

from vifplug import exceptions
from vifplug.ovsdb import schema, views
from vifplug.ovsdb.txn import Txn

LOG = logging.getLogger(__name__)

T = TypeVar("T")
Op = Callable[[Txn], Any]

MAX_TRY_AGAIN = 50


@dataclasses.dataclass
class _Pending:
    op: Op
    future: Future[Any]
    tries: int = 0
    writes: bool = True
    alone: bool = False  # after a server-side error: retried in a transaction of its own


class _Idl(ovs.db.idl.Idl):  # type: ignore[misc]
    """An Idl that reports row changes and reconnects to its owner."""

    def __init__(self, owner: Connection, remote: str, helper: Any, probe_interval: int) -> None:
        self._owner = owner
        super().__init__(remote, helper, probe_interval=probe_interval)

    def notify(self, event: str, row: Any, updates: Any = None) -> None:
        self._owner._on_row(event, row)

    def restart_fsm(self) -> None:
        # Called when the session (re)connects: the IDL will reload every row
        # without telling us about rows deleted while it was away.
        self._owner._resync_pending = True
        super().restart_fsm()


class _Index:
    """Name and iface-id indexes over the replica, updated per row change.

    Each update costs O(1) per changed row (O(ports) for a changed Bridge), so
    keeping it costs nothing that grows with the number of VIFs per VIF.
    """

    def __init__(self) -> None:
        self.names: dict[str, dict[str, uuid.UUID]] = {"Bridge": {}, "Port": {}, "Interface": {}}
        self.row_names: dict[uuid.UUID, tuple[str, str]] = {}
        self.iface_ids: dict[str, set[str]] = collections.defaultdict(set)
        self.iface_id_of: dict[str, str] = {}
        self.port_bridge: dict[uuid.UUID, uuid.UUID] = {}
        self.bridge_ports: dict[uuid.UUID, frozenset[uuid.UUID]] = {}

    def uuid_by_name(self, table: str, name: str) -> uuid.UUID | None:
        return self.names[table].get(name)

    def bridge_of_port(self, port_uuid: uuid.UUID) -> uuid.UUID | None:
        return self.port_bridge.get(port_uuid)

    def names_with_iface_id(self, iface_id: str) -> list[str]:
        return list(self.iface_ids.get(iface_id, ()))

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]


def _opt_str(value: Any) -> str | None:
    if isinstance(value, list):
        return value[0] if value else None
    return value or None


def _opt_int(value: Any) -> int | None:
    if isinstance(value, list):
        return int(value[0]) if value else None
    return int(value) if value is not None else None


def _iface_view(row: Any) -> views.InterfaceView:
    return views.InterfaceView(
        uuid=str(row.uuid),
        name=row.name,
        type=row.type,
        external_ids=dict(row.external_ids),
        ofport=_opt_int(row.ofport),
        error=_opt_str(row.error),
        mac_in_use=_opt_str(row.mac_in_use),
        link_state=_opt_str(row.link_state),
        options=dict(row.options),
        ingress_policing_rate=int(row.ingress_policing_rate),
        ingress_policing_burst=int(row.ingress_policing_burst),
    )


class _Waiter:
    __slots__ = ("event", "gone", "predicate", "view")

    def __init__(self, predicate: Callable[[views.InterfaceView], bool]) -> None:
        self.predicate = predicate
        self.event = threading.Event()
        self.view: views.InterfaceView | None = None
        self.gone = False


class Connection:
    """One OVSDB client connection shared by every thread of the daemon.

    ``submit``/``transact`` may be called from any thread; reads
    (``interface``, ``bridge``...) return snapshots and never block on the
    server.  ``on_resync`` callbacks run in their own thread after the
    connection comes back from a loss, so reconciliation can run there.
    """

    def __init__(
        self,
        remote: str,
        *,
        timeout: float = 30.0,
        probe_interval: int = 5000,
        max_batch: int = 2000,
        hold_max: float = 0.2,
        gather_max: float = 0.1,
    ) -> None:
        self.remote = remote
        self.hold_max = hold_max
        self.gather_max = gather_max
        self._expected = 0
        self._queued_since: float | None = None
        self.timeout = timeout
        self.probe_interval = probe_interval
        self.max_batch = max_batch
        self._idl: _Idl | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._queue: collections.deque[_Pending] = collections.deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._stopping = False
        self._resync_pending = False
        self._synced = threading.Event()
        self._index = _Index()
        self._ifaces: dict[str, views.InterfaceView] = {}
        self._waiters: dict[str, list[_Waiter]] = collections.defaultdict(list)
        self._inflight: tuple[ovs.db.idl.Transaction, list[_Pending], list[Any]] | None = None
        self._resync_callbacks: list[Callable[[], None]] = []
        self._iface_watchers: list[Callable[[views.InterfaceView], None]] = []
        self._generation = 0
        self.transactions = 0  # committed transactions (statistics)
        self.ops_committed = 0
        self.batch_sizes: collections.deque[int] = collections.deque(maxlen=1000)
        self.on_commit: Callable[[int, float], None] | None = None
        self._awaited_cfg: int | None = None  # next_cfg of our last write
        self._awaited_since = 0.0
        self._vswitchd_silent = False  # it missed hold_max: stop holding

    # -- lifecycle -------------------------------------------------------------
    def start(self, *, wait: float | None = None) -> Connection:
        """Connect and wait (``wait`` seconds, default ``timeout``) for the replica."""
        wait = self.timeout if wait is None else wait
        deadline = time.monotonic() + wait
        helper = None
        last: Exception | None = None
        while helper is None:
            try:
                helper = schema.schema_helper(
                    schema.fetch_schema_json(self.remote, max(0.1, deadline - time.monotonic()))
                )
            except exceptions.OvsdbUnavailable as exc:
                last = exc
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        del last
        self._idl = _Idl(self, self.remote, helper, self.probe_interval)
        self._thread = threading.Thread(target=self._loop, name="ovsdb-idl", daemon=True)
        self._thread.start()
        if not self._synced.wait(max(0.0, deadline - time.monotonic())):
            raise exceptions.OvsdbUnavailable(
                remote=self.remote, reason="no database contents received"
            )
        return self

    def stop(self) -> None:
        self._stopping = True
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            pending = list(self._queue)
            self._queue.clear()
        if self._inflight is not None:
            pending.extend(self._inflight[1])
            self._inflight = None
        for p in pending:
            if not p.future.done():
                p.future.set_exception(exceptions.ShuttingDown())
        if self._idl is not None:
            self._idl.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    @property
    def connected(self) -> bool:
        idl = self._idl
        return bool(
            idl is not None
            and idl._session.is_connected()
            and self._synced.is_set()
            and not self._resync_pending
        )

    @property
    def generation(self) -> int:
        """Incremented each time the replica was reloaded after a reconnect."""
        return self._generation

    def add_resync_callback(self, callback: Callable[[], None]) -> None:
        self._resync_callbacks.append(callback)

    def add_interface_watcher(self, callback: Callable[[views.InterfaceView], None]) -> None:
        """Call ``callback(view)`` on every Interface change.  It runs in the IDL
        thread, so it must only look at the view and hand work elsewhere."""
        self._iface_watchers.append(callback)

    # -- writes ----------------------------------------------------------------
    def submit(self, op: Op, *, writes: bool = True) -> Future[Any]:
        """Queue a write function; its future resolves once OVSDB committed it.

        ``writes=False`` marks a function that only reads: a batch of those
        does not ask ovs-vswitchd to reconfigure."""
        fut: Future[Any] = Future()
        if self._stopping:
            fut.set_exception(exceptions.ShuttingDown())
            return fut
        with self._lock:
            if not self._queue:
                self._queued_since = time.monotonic()
            self._queue.append(_Pending(op, fut, writes=writes))
        self._wake()
        return fut

    @contextlib.contextmanager
    def expecting(self) -> Iterator[None]:
        """Announce a write this thread will ``submit`` before leaving the block,
        so the batch being gathered waits for it (see the module docstring)."""
        with self._lock:
            self._expected += 1
        try:
            yield
        finally:
            with self._lock:
                self._expected -= 1
                last = self._expected == 0
            if last:
                self._wake()

    def transact(
        self, op: Callable[[Txn], T], *, timeout: float | None = None, writes: bool = True
    ) -> T:
        """Run ``op`` in the next transaction and block until it is committed.

        Raises the op's own exception, ``OvsdbTransactionFailed``, or
        ``OvsdbTimeout`` (the op may still be applied later; ops are
        idempotent, so the caller can compensate with another op).
        """
        future: Future[T] = self.submit(op, writes=writes)
        return self.result(future, timeout=timeout)

    def result(self, future: Future[T], *, timeout: float | None = None) -> T:
        """Wait for a submitted write, as ``transact`` does."""
        wait = self.timeout if timeout is None else timeout
        try:
            return future.result(timeout=wait)
        except TimeoutError:
            raise exceptions.OvsdbTimeout(timeout=wait) from None

    # -- reads -----------------------------------------------------------------
    def interface(self, name: str) -> views.InterfaceView | None:
        return self._ifaces.get(name)

    def interfaces_with_iface_id(self, iface_id: str) -> list[views.InterfaceView]:
        out = []
        for name in list(self._index.iface_ids.get(iface_id, ())):
            view = self._ifaces.get(name)
            if view is not None:
                out.append(view)
        return out

    def find_ofport(
        self, *, iface_id: str | None = None, attached_mac: str | None = None
    ) -> int | None:
        """The ofport of the interface with this iface-id (the active one if
        several) or attached-mac, as the IntegrationGuide describes."""
        if iface_id is not None:
            candidates = self.interfaces_with_iface_id(iface_id)
            candidates.sort(key=lambda v: v.external_ids.get("iface-status") != "active")
        else:
            mac = (attached_mac or "").lower()
            candidates = [
                v
                for v in list(self._ifaces.values())
                if v.external_ids.get("attached-mac", "").lower() == mac
            ]
        for view in candidates:
            if view.has_ofport:
                return view.ofport
        return None

    def read(self, fn: Callable[[Any], T], *, timeout: float | None = None) -> T:
        """Run ``fn(idl)`` in the IDL thread for whole-table reads (reconcile)."""

        def op(txn: Txn) -> T:
            return fn(txn.idl)

        return self.transact(op, timeout=timeout, writes=False)

    def wait_interface(
        self, name: str, predicate: Callable[[views.InterfaceView], bool], timeout: float
    ) -> views.InterfaceView | None:
        """Block until the Interface ``name`` satisfies ``predicate``; return its
        snapshot, or None on timeout.  Driven by row notifications, no polling.
        Raises ``InterfaceGone`` when the interface is deleted meanwhile (an
        unplug raced the wait)."""
        waiter = _Waiter(predicate)
        with self._lock:
            view = self._ifaces.get(name)
            if view is not None and predicate(view):
                return view
            self._waiters[name].append(waiter)
        try:
            if waiter.event.wait(timeout):
                if waiter.gone:
                    raise exceptions.InterfaceGone(device=name)
                return waiter.view
            return None
        finally:
            with self._lock:
                lst = self._waiters.get(name)
                if lst is not None:
                    with contextlib.suppress(ValueError):
                        lst.remove(waiter)
                    if not lst:
                        del self._waiters[name]

    # -- the IDL thread --------------------------------------------------------
    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._wake_r, 4096):
                pass

    def _loop(self) -> None:
        idl = self._idl
        assert idl is not None
        while not self._stopping:
            try:
                self._iterate(idl)
            except Exception:  # the owner thread must never die silently
                LOG.exception("OVSDB connection loop error; continuing")
                time.sleep(0.1)

    def _iterate(self, idl: _Idl) -> None:
        idl.run()
        if self._resync_pending and idl.state == idl.IDL_S_MONITORING:
            self._resync()
        if self._inflight is not None:
            self._poll_inflight()
        hold = max(self._hold_for_vswitchd(idl), self._hold_for_expected())
        if self._inflight is None and self._queue and self.connected and hold <= 0:
            self._start_txn(idl)
        poller = ovs.poller.Poller()
        if hold > 0 and self._queue:
            poller.timer_wait(int(hold * 1000) + 1)
        idl.wait(poller)
        if self._inflight is not None:
            self._inflight[0].wait(poller)
        poller.fd_wait(self._wake_r, ovs.poller.POLLIN)
        poller.timer_wait(1000)
        poller.block()
        self._drain_wake()

    def _hold_for_expected(self) -> float:
        """Seconds to keep gathering for writes announced with ``expecting()``."""
        with self._lock:
            if self._expected <= 0 or not self._queue or self._queued_since is None:
                return 0.0
            return max(0.0, self._queued_since + self.gather_max - time.monotonic())

    def _hold_for_vswitchd(self, idl: _Idl) -> float:
        """Seconds to keep holding the queue for ovs-vswitchd, or 0."""
        if self._awaited_cfg is None:
            return 0.0
        cur = self._cur_cfg(idl)
        if cur is not None and cur >= self._awaited_cfg:
            self._awaited_cfg = None
            self._vswitchd_silent = False
            return 0.0
        if self._vswitchd_silent:
            return 0.0
        left = self._awaited_since + self.hold_max - time.monotonic()
        if left <= 0:
            LOG.debug(
                "ovs-vswitchd has not applied cfg %d within %.2fs; not holding",
                self._awaited_cfg,
                self.hold_max,
            )
            self._vswitchd_silent = True
            return 0.0
        return left

    @staticmethod
    def _cur_cfg(idl: _Idl) -> int | None:
        for row in idl.tables["Open_vSwitch"].rows.values():
            return int(row.cur_cfg)
        return None

    def _start_txn(self, idl: _Idl) -> None:
        with self._lock:
            if self._queue[0].alone:
                batch = [self._queue.popleft()]
            else:
                batch = []
                while self._queue and len(batch) < self.max_batch and not self._queue[0].alone:
                    batch.append(self._queue.popleft())
            self._queued_since = time.monotonic() if self._queue else None
        batch = [p for p in batch if not p.future.done()]
        while batch:
            txn = ovs.db.idl.Transaction(idl)
            t = Txn(idl, txn, self._index)
            results: list[Any] = []
            failed: _Pending | None = None
            for p in batch:
                try:
                    results.append(p.op(t))
                except Exception as exc:
                    LOG.debug("operation failed while building a transaction: %r", exc)
                    p.future.set_exception(exc)
                    failed = p
                    break
            if failed is None:
                txn.add_comment(f"vifplug: {len(batch)} operation(s)")
                host = t.host()
                # Ask ovs-vswitchd to reconfigure only when something changed
                # (the IDL keeps the rows a transaction touches in _txn_rows).
                if host is not None and txn._txn_rows and any(p.writes for p in batch):
                    host.increment("next_cfg")
                self._inflight = (txn, batch, results)
                self._started = time.monotonic()
                self._poll_inflight()
                return
            txn.abort()
            batch = [p for p in batch if p is not failed]

    def _poll_inflight(self) -> None:
        assert self._inflight is not None
        txn, batch, results = self._inflight
        status = txn.commit()
        if status == ovs.db.idl.Transaction.INCOMPLETE:
            return
        LOG.debug("transaction of %d operation(s): %s", len(batch), status)
        self._inflight = None
        if status in (ovs.db.idl.Transaction.SUCCESS, ovs.db.idl.Transaction.UNCHANGED):
            self.transactions += 1
            self.ops_committed += len(batch)
            self.batch_sizes.append(len(batch))
            if self.on_commit is not None:
                self.on_commit(len(batch), time.monotonic() - self._started)
            if status == ovs.db.idl.Transaction.SUCCESS and any(p.writes for p in batch):
                with contextlib.suppress(Exception):
                    self._awaited_cfg = int(txn.get_increment_new_value())
                    self._awaited_since = time.monotonic()
            for p, r in zip(batch, results, strict=True):
                if not p.future.done():
                    p.future.set_result(r)
            return
        if status == ovs.db.idl.Transaction.TRY_AGAIN:
            retry = []
            for p in batch:
                p.tries += 1
                if p.tries > MAX_TRY_AGAIN:
                    p.future.set_exception(
                        exceptions.OvsdbTransactionFailed(status=status, reason="retried too often")
                    )
                else:
                    retry.append(p)
            with self._lock:
                self._queue.extendleft(reversed(retry))
            return
        error = txn.get_error() or status
        if status == ovs.db.idl.Transaction.ERROR and len(batch) > 1:
            # The server refused the batch (a constraint some request broke):
            # retry each in a transaction of its own, so only the culprit fails.
            LOG.warning(
                "OVSDB refused a batch of %d (%s); retrying them one by one", len(batch), error
            )
            for p in batch:
                p.alone = True
            with self._lock:
                self._queue.extendleft(reversed(batch))
            return
        for p in batch:
            if not p.future.done():
                p.future.set_exception(
                    exceptions.OvsdbTransactionFailed(status=status, reason=error)
                )

    # -- keeping snapshots and indexes -----------------------------------------
    def _on_row(self, event: str, row: Any) -> None:
        table = row._table.name
        if table == "Interface":
            self._on_interface(event, row)
        elif table in ("Port", "Bridge"):
            self._on_named(table, event, row)
        elif table == "Open_vSwitch":
            pass
        if table == "Bridge":
            self._on_bridge_ports(event, row)

    def _on_named(self, table: str, event: str, row: Any) -> None:
        names = self._index.names[table]
        if event == ovs.db.idl.ROW_DELETE:
            known = self._index.row_names.pop(row.uuid, None)
            if known is not None and names.get(known[1]) == row.uuid:
                del names[known[1]]
            return
        name = row.name
        names[name] = row.uuid
        self._index.row_names[row.uuid] = (table, name)

    def _on_bridge_ports(self, event: str, row: Any) -> None:
        idx = self._index
        old = idx.bridge_ports.pop(row.uuid, frozenset())
        new: frozenset[uuid.UUID] = frozenset()
        if event != ovs.db.idl.ROW_DELETE:
            new = frozenset(p.uuid for p in row.ports)
            idx.bridge_ports[row.uuid] = new
        for port_uuid in old - new:
            if idx.port_bridge.get(port_uuid) == row.uuid:
                del idx.port_bridge[port_uuid]
        for port_uuid in new - old:
            idx.port_bridge[port_uuid] = row.uuid

    def _on_interface(self, event: str, row: Any) -> None:
        self._on_named("Interface", event, row)
        if event == ovs.db.idl.ROW_DELETE:
            name = row.name
            with self._lock:
                current = self._ifaces.get(name)
                if current is None or current.uuid != str(row.uuid):
                    return  # a newer row of the same name replaced it
                del self._ifaces[name]
                waiters = list(self._waiters.get(name, ()))
            self._set_iface_id(name, None)
            for w in waiters:  # the interface is gone: stop waiting for it
                w.gone = True
                w.event.set()
            return
        view = _iface_view(row)
        self._set_iface_id(view.name, view.iface_id)
        with self._lock:
            self._ifaces[view.name] = view
            waiters = list(self._waiters.get(view.name, ()))
        for w in waiters:
            if not w.event.is_set() and self._check(w, view):
                w.view = view
                w.event.set()
        for watcher in self._iface_watchers:
            try:
                watcher(view)
            except Exception:
                LOG.exception("interface watcher failed for %s", view.name)

    @staticmethod
    def _check(waiter: _Waiter, view: views.InterfaceView) -> bool:
        try:
            return waiter.predicate(view)
        except Exception:
            LOG.exception("interface wait predicate failed for %s", view.name)
            return False

    def _set_iface_id(self, name: str, iface_id: str | None) -> None:
        idx = self._index
        old = idx.iface_id_of.get(name)
        if old == iface_id:
            return
        if old is not None:
            idx.iface_ids[old].discard(name)
            if not idx.iface_ids[old]:
                del idx.iface_ids[old]
        if iface_id is None:
            idx.iface_id_of.pop(name, None)
        else:
            idx.iface_id_of[name] = iface_id
            idx.iface_ids[iface_id].add(name)

    def _resync(self) -> None:
        """Rebuild snapshots and indexes from the reloaded replica (O(rows), once
        per reconnect), then tell waiters and the resync callbacks."""
        idl = self._idl
        assert idl is not None
        first = not self._synced.is_set()
        self._index.clear()
        with self._lock:
            self._ifaces = {}
        for table in ("Bridge", "Port"):
            for row in idl.tables[table].rows.values():
                self._on_named(table, ovs.db.idl.ROW_CREATE, row)
        for row in idl.tables["Bridge"].rows.values():
            self._on_bridge_ports(ovs.db.idl.ROW_CREATE, row)
        for row in idl.tables["Interface"].rows.values():
            self._on_interface(ovs.db.idl.ROW_CREATE, row)
        self._resync_pending = False
        self._generation += 1
        self._synced.set()
        if not first:
            LOG.info("OVSDB connection to %s re-established; replica reloaded", self.remote)
            for cb in list(self._resync_callbacks):
                threading.Thread(
                    target=self._run_callback, args=(cb,), name="ovsdb-resync", daemon=True
                ).start()

    @staticmethod
    def _run_callback(cb: Callable[[], None]) -> None:
        try:
            cb()
        except Exception:
            LOG.exception("resync callback failed")

    # -- snapshots for whole-host views -----------------------------------------
    def host(self) -> views.HostView | None:
        def fn(idl: Any) -> views.HostView | None:
            for row in idl.tables["Open_vSwitch"].rows.values():
                return views.HostView(
                    external_ids=dict(row.external_ids),
                    other_config=dict(row.other_config),
                    system_type=_opt_str(row.system_type),
                    system_version=_opt_str(row.system_version),
                    ovs_version=_opt_str(row.ovs_version),
                    cur_cfg=int(row.cur_cfg),
                    next_cfg=int(row.next_cfg),
                )
            return None

        return self.read(fn)

    def bridges(self) -> dict[str, views.BridgeView]:
        def fn(idl: Any) -> dict[str, views.BridgeView]:
            return {
                row.name: views.BridgeView(
                    uuid=str(row.uuid),
                    name=row.name,
                    datapath_type=row.datapath_type,
                    external_ids=dict(row.external_ids),
                    other_config=dict(row.other_config),
                    port_count=len(row.ports),
                )
                for row in idl.tables["Bridge"].rows.values()
            }

        return self.read(fn)

    def ports(self) -> dict[str, views.PortView]:
        def fn(idl: Any) -> dict[str, views.PortView]:
            out = {}
            for row in idl.tables["Port"].rows.values():
                b_uuid = self._index.bridge_of_port(row.uuid)
                b_row = idl.tables["Bridge"].rows.get(b_uuid) if b_uuid else None
                out[row.name] = views.PortView(
                    uuid=str(row.uuid),
                    name=row.name,
                    bridge=b_row.name if b_row is not None else None,
                    interfaces=tuple(i.name for i in row.interfaces),
                    external_ids=dict(row.external_ids),
                )
            return out

        return self.read(fn)

    def interfaces(self) -> list[views.InterfaceView]:
        with self._lock:
            return list(self._ifaces.values())


def flatten(ops: Iterable[Op]) -> Op:
    """Several write functions as one, applied together or not at all."""
    ops = list(ops)

    def op(txn: Txn) -> list[Any]:
        return [o(txn) for o in ops]

    return op
