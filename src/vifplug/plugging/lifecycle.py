"""The one code that moves a VIF's record between its lifecycle states.

The crash-safety protocol (``docs/state.md``): the intent is recorded
(``plugging``) before the system is changed, the outcome (``plugged``) after,
and only then is the caller answered; an unplug records ``unplugging`` first
and forgets the record last.  A crash at any point leaves a record that says
what to finish or undo, and reconciliation does it with the same functions
the service uses: ``unplug`` rolls back an interrupted plug and finishes an
interrupted unplug, ``repair`` re-makes what a plugged VIF lost.

``Gate`` holds plugs off while reconciliation runs: every operation passes it
together with others, reconciliation holds it alone.  Both the service and the
reconciler are given the same one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping

import fasteners

from vifplug import keyedlocks
from vifplug.plugging import admission, ports
from vifplug.plugins import base as plugin_base
from vifplug.records import Allocation, LeftAlone, Lifecycle, VifRecord
from vifplug.state import store as state_store

LOG = logging.getLogger(__name__)

#: Chooses a pool device, given who holds which device of the pool.
ChooseDevice = Callable[[Mapping[str, list[str]]], str]


class Gate:
    """Operations pass together; reconciliation passes alone (writer first)."""

    def __init__(self) -> None:
        self._lock = fasteners.ReaderWriterLock()

    @contextlib.contextmanager
    def operation(self) -> Iterator[None]:
        with self._lock.read_lock():
            yield

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._lock.write_lock():
            yield


def _recorded(intent: plugin_base.Intent) -> bool:
    """Whether the intent is durable (so a failed plug has one to forget)."""
    try:
        intent.wait()
    except Exception:
        return False
    return True


class Transitions:
    """Moves records between ``plugging``, ``plugged`` and ``unplugging``,
    changing the system through the plugins in between.

    Callers serialize operations on one VIF; here, iface-status changes of
    the VIFs sharing an iface-id are serialized, so OVSDB and the store agree
    on which one is active.
    """

    def __init__(
        self,
        *,
        store: state_store.Store,
        plugins: Mapping[str, plugin_base.PluginBase],
        ports: ports.OvsPorts,
    ) -> None:
        self.store = store
        self.plugins = plugins
        self.ports = ports
        self._iface_locks = keyedlocks.KeyedLocks()
        self._pool_lock = threading.Lock()

    # -- plug ------------------------------------------------------------------------
    def begin_plug(self, record: VifRecord, choose: ChooseDevice | None = None) -> VifRecord:
        """Record the intent durably.  With ``choose``, a pool device is chosen
        and recorded under one lock, so two plugs never take the same
        exclusive device."""
        if choose is None:
            self.store.begin_plug(record)
            return record
        assert record.allocation is not None and record.allocation.network is not None
        with self._pool_lock:
            device = choose(self.store.pool_holders(record.allocation.network))
            allocation = _with_pool_device(record.allocation, device)
            record = record.with_changes(allocation=allocation)
            self.store.begin_plug(record)
        return record

    def queue_begin_plug(self, record: VifRecord) -> plugin_base.Intent:
        """Record the intent without waiting for the disk (no pool device to
        choose): ``finish_plug`` waits for it before anything is kept."""
        return self.store.queue_begin_plug(record)

    def finish_plug(
        self,
        record: VifRecord,
        admitted: admission.Admitted,
        *,
        iface_status: str | None,
        exclusive: bool,
        intent: plugin_base.Intent = plugin_base.DURABLE,
    ) -> VifRecord:
        """Change the system as the recorded intent says, then record the
        outcome.  On failure the plugin has removed what it made and the intent
        is forgotten (the caller never got an answer and retries).

        ``intent``: the intent's write, perhaps still in flight
        (``queue_begin_plug``).  A plugin that ``OVERLAPS_INTENT`` makes its
        device meanwhile; any other is called only once it is durable."""
        assert record.allocation is not None
        plugin = admitted.plugin
        if not plugin.OVERLAPS_INTENT:
            intent.wait()  # refused: nothing was changed, nothing to forget
            intent = plugin_base.DURABLE
        with self._iface_lock(record.iface_id):
            try:
                outcome = plugin.plug(
                    admitted.vif,
                    admitted.instance,
                    record.allocation,
                    iface_status=iface_status,
                    exclusive=exclusive,
                    intent=intent,
                )
            except BaseException:
                if _recorded(intent):
                    self.forget(record)
                raise
            final = self.store.finish_plug(
                record.vif_id, outcome.allocation, iface_status=iface_status
            )
            self._record_demotions(final, outcome.demoted)
        return final

    def replug(
        self, record: VifRecord, admitted: admission.Admitted, *, exclusive: bool
    ) -> VifRecord:
        """The same plug again: make sure the system still matches (repairs a
        deleted tap or port) without changing what the record says."""
        assert record.allocation is not None
        with self._iface_lock(record.iface_id):
            outcome = admitted.plugin.plug(
                admitted.vif,
                admitted.instance,
                record.allocation,
                iface_status=record.iface_status,
                exclusive=exclusive,
            )
            self._record_demotions(record, outcome.demoted)
        return record

    def repair(self, record: VifRecord) -> None:
        """Re-make what a plugged VIF lost, from its recorded request and
        allocation, with the same names (reconciliation)."""
        plugin = self.plugins[record.plugin]
        assert record.allocation is not None
        admitted = admission.reload(record.request, plugin)
        plugin.plug(
            admitted.vif,
            admitted.instance,
            record.allocation,
            iface_status=record.iface_status,
            exclusive=False,
        )

    # -- unplug ----------------------------------------------------------------------
    def unplug(self, record: VifRecord) -> tuple[LeftAlone, ...]:
        """Remove what the record says vifplug made, then forget it: an
        unplug, a rolled-back interrupted plug, or a finished interrupted
        unplug.  A record whose plugin is gone is simply forgotten.

        Returns what the plugin found under the record's names but left in
        place because someone else made it (logged here as a warning)."""
        if record.lifecycle != Lifecycle.UNPLUGGING:
            record = self.store.begin_unplug(record.vif_id)
        plugin = self.plugins.get(record.plugin)
        left: tuple[LeftAlone, ...] = ()
        if plugin is not None and record.allocation is not None:
            left = plugin.unplug(record.allocation, record.vif_id)
        self.store.finish_unplug(record.vif_id)
        for item in left:
            LOG.warning(
                "VIF %s unplugged; left %s %s in place: %s",
                record.vif_id,
                item.kind,
                item.name,
                item.reason,
            )
        return left

    def forget(self, record: VifRecord) -> None:
        """Forget an intent whose system changes are already undone, through
        the same ``unplugging`` step an interrupted unplug takes."""
        if record.lifecycle != Lifecycle.UNPLUGGING:
            self.store.begin_unplug(record.vif_id)
        self.store.finish_unplug(record.vif_id)

    # -- iface-status ----------------------------------------------------------------
    def set_status(self, record: VifRecord, status: str, *, exclusive: bool) -> None:
        """Switch the VIF's iface-status in OVSDB and the record together."""
        with self._iface_lock(record.iface_id):
            demoted: list[str] = []
            if record.plugin in self.plugins and record.allocation is not None:
                demoted = self.ports.set_status(record.allocation, status, exclusive=exclusive)
            self.store.set_status({record.vif_id: status})
            self._record_demotions(record, demoted)

    def _record_demotions(self, record: VifRecord, demoted: Iterable[str]) -> None:
        """Record as inactive the other VIFs whose interfaces OVSDB just made so."""
        names = set(demoted)
        if not names or record.iface_id is None:
            return
        changes: dict[str, str | None] = {}
        for other in self.store.by_iface_id(record.iface_id):
            if (
                other.vif_id != record.vif_id
                and other.allocation is not None
                and other.allocation.port in names
            ):
                changes[other.vif_id] = admission.INACTIVE
        if changes:
            self.store.set_status(changes)
            LOG.info("VIF %s active; made %s inactive", record.vif_id, ", ".join(changes))

    def _iface_lock(self, iface_id: str | None) -> contextlib.AbstractContextManager[None]:
        return self._iface_locks.held(iface_id)


def _with_pool_device(allocation: Allocation, device: str) -> Allocation:
    return dataclasses.replace(allocation, pool_device=device)
