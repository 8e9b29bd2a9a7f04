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

A write can also poison the connection itself: ovsdb-server closes it on a
transaction its JSON parser rejects (a ``\\u0000`` in a string, say), and the
IDL reports TRY_AGAIN for everything in flight.  Resending the same batch
after each reconnect would lose it every time, with every caller in it.  So
a batch that lost the connection twice is split into transactions of one,
and a write that lost it ``MAX_LOST`` times, the last one alone, fails
(``OvsdbTransactionFailed``) while the others commit.  An ovsdb-server that
merely restarted costs a batch one loss, and a write sent while the server
is away is not sent at all, so neither is mistaken for a culprit.

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

And batches keep their pace: once ovs-vswitchd applied a batch, the plugs
that waited for their ofport are answered and come back with their next
writes together, so the next batch gathers (``pace_max`` at most from that
moment) until as many writes are queued as the last one carried.  16
clients then write 16 at a time, as the lockstep floor does, instead of
batches of 10 and 6.

This module is the thread and the batching only.  What is known of the
database between transactions (name and iface-id indexes, Interface
snapshots, waiters, watchers) is ``replica.Replica``: the IDL thread feeds it
row changes, and it runs watchers in a notify thread of its own, never in
this one.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import importlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

import ovs.db.idl
import ovs.json
import ovs.poller

from vifplug import exceptions, threadnames
from vifplug.ovsdb import schema, views
from vifplug.ovsdb.replica import InterfaceWatcher, Predicate, Replica, ResyncCallback
from vifplug.ovsdb.schema import Row
from vifplug.ovsdb.txn import Txn

LOG = logging.getLogger(__name__)

T = TypeVar("T")
Op = Callable[[Txn], Any]
CommitHook = Callable[[int, float], None]
"""``on_commit(batch_size, seconds)``: called in the IDL thread after each
committed transaction, so it must be cheap (a metric)."""

MAX_TRY_AGAIN = 50
SPLIT_AFTER_LOST = 2  # a batch that lost the connection this often is split
MAX_LOST = 3  # a write whose transaction lost it this often, the last alone, fails


@dataclasses.dataclass
class _Pending:
    op: Op
    future: Future[Any]
    tries: int = 0
    lost: int = 0  # transactions carrying it that ended with the connection lost
    writes: bool = True
    alone: bool = False  # after a server-side error: retried in a transaction of its own


@dataclasses.dataclass
class _Inflight:
    txn: ovs.db.idl.Transaction
    batch: list[_Pending]
    results: list[Any]
    started: float
    seqno: int  # the session's: it changes when the connection is lost


def json_parser() -> str:
    """Which JSON parser the ``ovs`` bindings use, for the start-up log.

    The C one (``ovs._json``) parses OVSDB updates ~25x faster than the pure
    Python one, and parsing is a large share of the daemon's CPU per plugged
    VIF; a venv built from PyPI alone has only the Python one
    (scripts/link-ovs-c-parser, docs/performance.md).
    """
    if ovs.json.PARSER == ovs.json.PARSER_C:
        return f"C ({importlib.import_module('ovs._json').__file__})"
    return "pure Python (slower; scripts/link-ovs-c-parser gives the venv the C one)"


class _Idl(ovs.db.idl.Idl):  # type: ignore[misc]
    """An Idl that reports row changes and reconnects."""

    def __init__(
        self,
        remote: str,
        helper: ovs.db.idl.SchemaHelper,
        probe_interval: int,
        *,
        on_row: Callable[[str, Row], None],
        on_restart: Callable[[], None],
    ) -> None:
        self._vifplug_on_row = on_row
        self._vifplug_on_restart = on_restart
        super().__init__(remote, helper, probe_interval=probe_interval)

    def notify(self, event: str, row: Row, updates: Row = None) -> None:
        self._vifplug_on_row(event, row)

    def restart_fsm(self) -> None:
        # Called when the session (re)connects: the IDL will reload every row
        # without telling us about rows deleted while it was away.
        self._vifplug_on_restart()
        super().restart_fsm()


class Connection:
    """One OVSDB client connection shared by every thread of the daemon.

    ``submit``/``transact`` may be called from any thread; reads
    (``interface``, ``bridges``...) return snapshots and never block on the
    server.  Watchers (``add_interface_watcher``) and resync callbacks run in
    the replica's notify thread, so reconciliation can run there.
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
        pace_max: float = 0.05,
        on_commit: CommitHook | None = None,
    ) -> None:
        self.remote = remote
        self.timeout = timeout
        self.probe_interval = probe_interval
        self.max_batch = max_batch
        self.hold_max = hold_max
        self.gather_max = gather_max
        self.pace_max = pace_max
        self.replica = Replica()
        self.transactions = 0  # committed transactions (statistics)
        self.ops_committed = 0
        self.batch_sizes: collections.deque[int] = collections.deque(maxlen=1000)
        self._on_commit = on_commit
        self._idl: _Idl | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # guards _queue, _queued_since, _expected
        self._queue: collections.deque[_Pending] = collections.deque()
        self._queued_since: float | None = None
        self._expected = 0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._stopping = False
        self._stopped = False
        self._pipe_closed = False
        #: ``time.monotonic()`` when the IDL thread last went round its loop
        #: (at least once a second while it is healthy): the watchdog's witness.
        self.loop_beat = time.monotonic()
        self._resync_pending = False
        self._synced = threading.Event()
        self._inflight: _Inflight | None = None
        self._awaited_cfg: int | None = None  # next_cfg of our last write
        self._awaited_since = 0.0
        self._vswitchd_silent = False  # it missed hold_max: stop holding
        #: Writes in the last batch ovs-vswitchd was waited for, and when it
        #: had applied that batch: the pace of the next one (see _hold_for_pace).
        self._paced_writes = 0
        self._released_at: float | None = None

    # -- lifecycle -------------------------------------------------------------
    def start(self, *, wait: float | None = None) -> Connection:
        """Connect and wait (``wait`` seconds, default ``timeout``) for the replica."""
        wait = self.timeout if wait is None else wait
        deadline = time.monotonic() + wait
        LOG.info("OVSDB JSON parser: %s", json_parser())
        helper = None
        while helper is None:
            try:
                helper = schema.schema_helper(
                    schema.fetch_schema_json(self.remote, max(0.1, deadline - time.monotonic()))
                )
            except exceptions.OvsdbUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self._idl = _Idl(
            self.remote,
            helper,
            self.probe_interval,
            on_row=self.replica.on_row,
            on_restart=self._on_restart,
        )
        self.replica.start()
        self._thread = threadnames.Thread(target=self._loop, name="ovsdb-idl", daemon=True)
        self._thread.start()
        if not self._synced.wait(max(0.0, deadline - time.monotonic())):
            self.stop()
            raise exceptions.OvsdbUnavailable(
                remote=self.remote, reason="no database contents received"
            )
        return self

    def stop(self) -> None:
        """Stop the thread and fail what is pending with ``ShuttingDown``.
        Idempotent: a second call must not close the wake pipe's descriptor
        numbers again, which by then may belong to someone else."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping = True
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            pending = list(self._queue)
            self._queue.clear()
        if self._inflight is not None:
            pending.extend(self._inflight.batch)
            self._inflight = None
        for p in pending:
            if not p.future.done():
                p.future.set_exception(exceptions.ShuttingDown())
        self.replica.stop()
        if self._idl is not None:
            self._idl.close()
        with self._lock:
            self._pipe_closed = True
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
        return self.replica.generation

    @property
    def reconnects(self) -> int:
        """How many times the connection came back after a loss (the first
        connection is not one)."""
        return max(0, self.replica.generation - 1)

    def vswitchd_lag(self) -> tuple[int, float] | None:
        """See ``Replica.vswitchd_lag``; a snapshot, never asks the server."""
        return self.replica.vswitchd_lag()

    def add_resync_callback(self, callback: ResyncCallback) -> None:
        """Call ``callback()`` each time the connection came back from a loss
        and the replica was reloaded.  It runs in the notify thread."""
        self.replica.add_resync_callback(callback)

    def add_interface_watcher(self, callback: InterfaceWatcher) -> None:
        """Call ``callback(view)`` on every Interface change.  It runs in the
        notify thread, one notification after the other, so a slow watcher
        delays other watchers (and resync callbacks) but never a transaction."""
        self.replica.add_interface_watcher(callback)

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
    def read(self, fn: Callable[[ovs.db.idl.Idl], T], *, timeout: float | None = None) -> T:
        """Run ``fn(idl)`` in the IDL thread for whole-table reads (reconcile)."""

        def op(txn: Txn) -> T:
            return fn(txn.idl)

        return self.transact(op, timeout=timeout, writes=False)

    def interface(self, name: str) -> views.InterfaceView | None:
        return self.replica.interface(name)

    def interfaces(self) -> list[views.InterfaceView]:
        return self.replica.interfaces()

    def interfaces_with_iface_id(self, iface_id: str) -> list[views.InterfaceView]:
        return self.replica.interfaces_with_iface_id(iface_id)

    def find_ofport(
        self, *, iface_id: str | None = None, attached_mac: str | None = None
    ) -> int | None:
        """See ``Replica.find_ofport``."""
        return self.replica.find_ofport(iface_id=iface_id, attached_mac=attached_mac)

    def wait_interface(
        self, name: str, predicate: Predicate, timeout: float
    ) -> views.InterfaceView | None:
        """See ``Replica.wait_interface``; raises ``InterfaceGone``."""
        return self.replica.wait_interface(name, predicate, timeout)

    def host(self) -> views.HostView | None:
        return self.read(self.replica.host_view)

    def bridges(self) -> dict[str, views.BridgeView]:
        return self.read(self.replica.bridge_views)

    def ports(self) -> dict[str, views.PortView]:
        return self.read(self.replica.port_views)

    # -- the IDL thread --------------------------------------------------------
    def _wake(self) -> None:
        with self._lock:
            if self._pipe_closed:
                return  # its descriptor number may be someone else's now
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._wake_r, 4096):
                pass

    def _on_restart(self) -> None:
        self._resync_pending = True
        # A new session: what ovs-vswitchd had to apply of the old one, and
        # the pace of its last batch, say nothing about the next batch.
        self._awaited_cfg = None
        self._released_at = None
        self._paced_writes = 0

    def _loop(self) -> None:
        idl = self._idl
        assert idl is not None
        while not self._stopping:
            self.loop_beat = time.monotonic()
            try:
                self._iterate(idl)
            except Exception:  # the owner thread must never die silently
                LOG.exception("OVSDB connection loop error; continuing")
                time.sleep(0.1)

    def _iterate(self, idl: _Idl) -> None:
        idl.run()
        if self._resync_pending and idl.state == idl.IDL_S_MONITORING:
            self._resync(idl)
        self.replica.flush()
        if self._inflight is not None:
            self._poll_inflight()
        hold = max(self._hold_for_vswitchd(idl), self._hold_for_expected(), self._hold_for_pace())
        if self._inflight is None and self._queue and self.connected and hold <= 0:
            self._start_txn(idl)
        poller = ovs.poller.Poller()
        if hold > 0 and self._queue:
            poller.timer_wait(int(hold * 1000) + 1)
        idl.wait(poller)
        if self._inflight is not None:
            self._inflight.txn.wait(poller)
        poller.fd_wait(self._wake_r, ovs.poller.POLLIN)
        poller.timer_wait(1000)
        poller.block()
        self._drain_wake()

    def _resync(self, idl: _Idl) -> None:
        """The IDL reloaded every row after (re)connecting: rebuild the replica,
        then tell the resync callbacks (not on the first connection)."""
        first = not self._synced.is_set()
        self.replica.rebuild(idl)
        self._resync_pending = False
        self._synced.set()
        if not first:
            LOG.info("OVSDB connection to %s re-established; replica reloaded", self.remote)
            self.replica.resynced()

    # -- pacing ------------------------------------------------------------------
    def _hold_for_expected(self) -> float:
        """Seconds to keep gathering for writes announced with ``expecting()``."""
        with self._lock:
            if self._expected <= 0 or not self._queue or self._queued_since is None:
                return 0.0
            return max(0.0, self._queued_since + self.gather_max - time.monotonic())

    def _hold_for_pace(self) -> float:
        """Seconds to keep gathering, just after ovs-vswitchd applied a batch,
        until as many writes are queued as that batch carried.

        The plugs of a batch that wait for their ofport are answered when
        ovs-vswitchd applies it, and come back with their next writes a few
        milliseconds later; without this, the few writes that arrived
        meanwhile left first, alone, and the returning ones waited a whole
        reconfiguration for the next batch
        (16 clients made batches of 10 and 6, half again as many
        reconfigurations as 16 at a time).  Bounded by ``pace_max`` from the
        release (a turn-around, not ``gather_max``'s preparation of devices),
        so a burst that ended costs one short wait; a lone caller never waits
        (its batch was one write).
        """
        released = self._released_at
        if released is None:
            return 0.0
        with self._lock:
            queued = sum(1 for p in self._queue if p.writes and not p.future.done())
        if queued == 0 or queued >= self._paced_writes:
            return 0.0
        left = released + self.pace_max - time.monotonic()
        if left <= 0:
            self._released_at = None
            return 0.0
        return left

    def _hold_for_vswitchd(self, idl: _Idl) -> float:
        """Seconds to keep holding the queue for ovs-vswitchd, or 0."""
        if self._awaited_cfg is None:
            return 0.0
        cur = self._cur_cfg(idl)
        if cur is not None and cur >= self._awaited_cfg:
            self._awaited_cfg = None
            self._vswitchd_silent = False
            self._released_at = time.monotonic()
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

    # -- batches -----------------------------------------------------------------
    def _take_batch(self) -> list[_Pending]:
        """What the next transaction carries: everything queued (``max_batch``
        at most), or the one write at the head that must go alone."""
        with self._lock:
            if self._queue[0].alone:
                batch = [self._queue.popleft()]
            else:
                batch = []
                while self._queue and len(batch) < self.max_batch and not self._queue[0].alone:
                    batch.append(self._queue.popleft())
            self._queued_since = time.monotonic() if self._queue else None
        return [p for p in batch if not p.future.done()]

    def _start_txn(self, idl: _Idl) -> None:
        batch = self._take_batch()
        while batch:
            txn = ovs.db.idl.Transaction(idl)
            t = Txn(idl, txn, self.replica.index)
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
                seqno = idl._session.get_seqno()
                self._inflight = _Inflight(txn, batch, results, time.monotonic(), seqno)
                self._poll_inflight()
                return
            txn.abort()
            batch = [p for p in batch if p is not failed]

    def _poll_inflight(self) -> None:
        inflight = self._inflight
        assert inflight is not None
        status = inflight.txn.commit()
        if status == ovs.db.idl.Transaction.INCOMPLETE:
            return
        LOG.debug("transaction of %d operation(s): %s", len(inflight.batch), status)
        self._inflight = None
        if status in (ovs.db.idl.Transaction.SUCCESS, ovs.db.idl.Transaction.UNCHANGED):
            self._committed(inflight, status)
        elif status == ovs.db.idl.Transaction.TRY_AGAIN:
            if self._lost_connection(inflight):
                self._lost(inflight.batch)
            self._try_again([p for p in inflight.batch if not p.future.done()], status)
        else:
            self._refused(inflight, status)

    def _committed(self, inflight: _Inflight, status: str) -> None:
        batch = inflight.batch
        self.transactions += 1
        self.ops_committed += len(batch)
        self.batch_sizes.append(len(batch))
        if self._on_commit is not None:
            try:
                self._on_commit(len(batch), time.monotonic() - inflight.started)
            except Exception:
                LOG.exception("on_commit hook failed")
        if status == ovs.db.idl.Transaction.SUCCESS and any(p.writes for p in batch):
            with contextlib.suppress(Exception):
                self._awaited_cfg = int(inflight.txn.get_increment_new_value())
                self._awaited_since = time.monotonic()
                self._paced_writes = sum(1 for p in batch if p.writes)
                self._released_at = None
        for p, r in zip(batch, inflight.results, strict=True):
            if not p.future.done():
                p.future.set_result(r)

    def _lost_connection(self, inflight: _Inflight) -> bool:
        idl = self._idl
        return idl is None or idl._session.get_seqno() != inflight.seqno

    def _lost(self, batch: list[_Pending]) -> None:
        """The connection went away with ``batch`` in flight: count it, split
        a batch that keeps losing it, fail the write that loses it alone."""
        for p in batch:
            p.lost += 1
        if len(batch) > 1 and max(p.lost for p in batch) >= SPLIT_AFTER_LOST:
            LOG.warning(
                "the OVSDB connection was lost %d times with the same batch of %d in flight; "
                "sending them one per transaction so that a write the server rejects fails alone",
                max(p.lost for p in batch),
                len(batch),
            )
            for p in batch:
                p.alone = True
            return
        if len(batch) == 1 and batch[0].lost >= MAX_LOST and not batch[0].future.done():
            LOG.error(
                "ovsdb-server closed the connection each of the %d times one write was sent, "
                "the last time alone; failing that write",
                batch[0].lost,
            )
            batch[0].future.set_exception(
                exceptions.OvsdbTransactionFailed(
                    status="connection lost",
                    reason=f"ovsdb-server closed the connection each of the {batch[0].lost} "
                    "times this write was sent, so it is not sent again",
                )
            )

    def _try_again(self, batch: list[_Pending], status: str) -> None:
        """Rebuild the batch from fresh data once the server is back."""
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

    def _refused(self, inflight: _Inflight, status: str) -> None:
        batch = inflight.batch
        error = inflight.txn.get_error() or status
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


def flatten(ops: Iterable[Op]) -> Op:
    """Several write functions as one, applied together or not at all."""
    ops = list(ops)

    def op(txn: Txn) -> list[Any]:
        return [o(txn) for o in ops]

    return op
