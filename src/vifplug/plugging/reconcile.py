"""Start-up (and reconnect) reconciliation: converge the host on the state.

Rules, applied to every VIF the store knows:

- ``plugging`` (never acknowledged): roll back whatever the interrupted plug
  made, and forget the VIF; the caller never got an answer and retries.
- ``unplugging``: finish the unplug.
- ``plugged`` (acknowledged): make sure its devices and port exist; recreate
  what is missing with the same names, from the recorded request and
  allocation, so pool devices stay with the VIF that holds them.

After a host reboot (``rebooted``), a ``plugged`` VIF whose created devices
are all gone is forgotten (its port removed) instead of repaired: the reboot
took its tap and stopped its VM, and recreating a port for a VM nobody has
started is as wrong as losing one that runs; the compute service plugs it
again when it starts the VM.

Each of these is a ``lifecycle.Transitions`` call, the same code the service
runs.  Then whatever carries this daemon's marks (``vifplug-owner`` in an
Interface's external_ids, our kernel link group) and belongs to no VIF is a
leak, and is removed, unless the **leak guard** holds: a state that is new,
that does not match the host, or that accounts for far fewer of our ports or
devices than the host holds is more likely lost than the ports leaked, and
removing them would take running VMs off the network.  Then nothing is
removed, the run says so at ERROR once, and the guard holds (kept in the
state, across restarts) until nothing is left to remove (the compute
service's re-plugs adopted every port) or an operator purges.  The rule is
in ``docs/state.md``.  Nothing without our marks is ever touched.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import enum
import json
import logging
import threading
import time
from collections.abc import Callable

from vifplug import threadnames
from vifplug.plugging import inventory as inventory_mod
from vifplug.plugging import lifecycle
from vifplug.records import Lifecycle, VifRecord
from vifplug.state import store as state_store

LOG = logging.getLogger(__name__)

REPAIR_WORKERS = 64
#: A progress line (and ``on_progress`` call) after this many VIFs were
#: acted on, or after ``PROGRESS_SECONDS``, whichever comes first.
PROGRESS_EVERY = 50
PROGRESS_SECONDS = 2.0

#: ``on_progress(done, total)``: VIFs acted on so far, out of ``total``
#: that needed it (called with (0, total) when the work is known).
ProgressHook = Callable[[int, int], None]

#: Meta key of the held leak guard: JSON ``{"reason", "since"}``, or "" when released.
META_LEAK_GUARD = "leak_guard"


class Action(enum.Enum):
    """What reconciliation does to one VIF; the value names its Report list."""

    ROLL_BACK = "rolled_back"
    FINISH_UNPLUG = "finished_unplugs"
    REPAIR = "repaired"
    FORGET = "forgotten_after_reboot"


@dataclasses.dataclass(frozen=True)
class LeakLimits:
    """How much one run may remove as leaked (``[reconcile]``), per kind."""

    max_removal: int = 8
    max_fraction: float = 0.5


@dataclasses.dataclass(frozen=True)
class Leaks:
    """What carries this daemon's marks and no VIF in the state accounts for,
    beside how much carries the marks in all."""

    ports: dict[str, str]  # interface name -> its vifplug-vif-id
    links: list[str]
    marked_ports: int
    marked_links: int

    def __bool__(self) -> bool:
        return bool(self.ports or self.links)


@dataclasses.dataclass(frozen=True)
class Guard:
    """The leak guard: whether it holds, why, since when (Unix time), and how
    many ports and devices the last run kept because of it."""

    held: bool
    reason: str | None = None
    since: float | None = None
    ports: int = 0
    links: int = 0


@dataclasses.dataclass
class Report:
    rolled_back: list[str] = dataclasses.field(default_factory=list)
    finished_unplugs: list[str] = dataclasses.field(default_factory=list)
    repaired: list[str] = dataclasses.field(default_factory=list)
    forgotten_after_reboot: list[str] = dataclasses.field(default_factory=list)
    leaked_ports: list[str] = dataclasses.field(default_factory=list)
    leaked_links: list[str] = dataclasses.field(default_factory=list)
    held_ports: list[str] = dataclasses.field(default_factory=list)
    held_links: list[str] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        text = (
            f"rolled back {len(self.rolled_back)} interrupted plug(s), finished "
            f"{len(self.finished_unplugs)} unplug(s), repaired {len(self.repaired)} "
            f"VIF(s), removed {len(self.leaked_ports)} leaked port(s) and "
            f"{len(self.leaked_links)} leaked device(s)"
        )
        if self.forgotten_after_reboot:
            text += (
                f", forgot {len(self.forgotten_after_reboot)} VIF(s) whose devices the reboot took"
            )
        if self.held_ports or self.held_links:
            text += (
                f"; the leak guard kept {len(self.held_ports)} port(s) and "
                f"{len(self.held_links)} device(s) no VIF accounts for"
            )
        return text


@dataclasses.dataclass
class Totals:
    """What every run since start did, summed: read at scrape time by the
    metrics collector, so that the hot path pushes nothing anywhere.

    ``vifs`` counts VIFs by ``Action`` value; ``leaks_removed`` and
    ``leaks_kept`` count ports (``port``) and devices (``device``) removed,
    or kept by the leak guard (a run that keeps the same port as the one
    before counts it again: the guard refused to remove it again).
    """

    runs: int = 0
    seconds: float = 0.0
    last_seconds: float | None = None
    last_finished: float | None = None  # Unix time
    errors: int = 0
    vifs: dict[str, int] = dataclasses.field(
        default_factory=lambda: {action.value: 0 for action in Action}
    )
    leaks_removed: dict[str, int] = dataclasses.field(
        default_factory=lambda: {"port": 0, "device": 0}
    )
    leaks_kept: dict[str, int] = dataclasses.field(default_factory=lambda: {"port": 0, "device": 0})

    def add(self, report: Report, seconds: float) -> None:
        self.runs += 1
        self.seconds += seconds
        self.last_seconds = seconds
        self.last_finished = time.time()
        self.errors += len(report.errors)
        for action in Action:
            self.vifs[action.value] += len(getattr(report, action.value))
        self.leaks_removed["port"] += len(report.leaked_ports)
        self.leaks_removed["device"] += len(report.leaked_links)
        self.leaks_kept["port"] += len(report.held_ports)
        self.leaks_kept["device"] += len(report.held_links)


class Reconciler:
    """Runs reconciliation; one run at a time, while plugs are held off."""

    def __init__(
        self,
        *,
        store: state_store.Store,
        transitions: lifecycle.Transitions,
        gate: lifecycle.Gate,
        inventory: inventory_mod.Inventory,
        limits: LeakLimits | None = None,
        on_progress: ProgressHook | None = None,
    ) -> None:
        self.store = store
        self.on_progress = on_progress
        self.transitions = transitions
        self.gate = gate
        self.inventory = inventory
        self.limits = limits or LeakLimits()
        self._lock = threading.Lock()
        self.runs = 0
        self.last: Report | None = None
        self.running = False
        self.totals = Totals()
        self._held: tuple[str, float] | None = _load_guard(store.meta_get(META_LEAK_GUARD))

    def run(
        self, *, suspect: str | None = None, rebooted: bool = False, purge: bool = False
    ) -> Report:
        """One reconciliation, while plugs are held off.

        ``suspect``: why the state may not describe this host (new, another
        host's), so that leaks are not removed; ``rebooted``: the host
        rebooted since the state was last reconciled; ``purge``: an operator
        asked for every leak to be removed, whatever the guard says.
        """
        with self._lock, self.gate.exclusive():
            self.running = True
            started = time.monotonic()
            try:
                report = self._run(suspect=suspect, rebooted=rebooted, purge=purge)
            finally:
                self.running = False
            self.totals.add(report, time.monotonic() - started)
        self.runs += 1
        self.last = report
        LOG.info("reconciliation: %s", report.summary())
        return report

    def purge(self) -> Report:
        """Remove every leak now (the operator's explicit purge), and release the guard."""
        return self.run(purge=True)

    @property
    def guard(self) -> Guard:
        held = self._held
        if held is None:
            return Guard(held=False)
        last = self.last
        return Guard(
            held=True,
            reason=held[0],
            since=held[1],
            ports=len(last.held_ports) if last is not None else 0,
            links=len(last.held_links) if last is not None else 0,
        )

    def _run(self, *, suspect: str | None, rebooted: bool, purge: bool) -> Report:
        """Classify every VIF against one inventory of the host, then act on
        those that need it concurrently, so their OVSDB writes share
        transactions (after a lost database, a repair per VIF one after the
        other would cost one ovs-vswitchd reconfiguration each)."""
        report = Report()
        snapshot = self.inventory.take()
        work = self._classify(snapshot.links, rebooted=rebooted)
        self._progress(0, len(work))
        if work:
            LOG.info("reconciliation: %d of %d VIF(s) need work", len(work), len(self.store.all()))
            outcomes = self._act_all(work)
            for (action, record), error in zip(work, outcomes, strict=True):
                if error is None:
                    getattr(report, action.value).append(record.vif_id)
                else:
                    report.errors.append(f"{record.vif_id}: {error}")
        for action in Action:
            getattr(report, action.value).sort()
        self._enforce_iface_id_rule(report)
        # A pass that acted on no VIF changed no device or port mark (the
        # gate holds plugs off), so its inventory is still the host's: listing
        # every device again cost half a second per 1000 on a restart.
        fresh = None if work else snapshot
        self._remove_leaks(report, suspect=suspect, purge=purge, snapshot=fresh)
        return report

    def _enforce_iface_id_rule(self, report: Report) -> None:
        """Which interface carries the iface-id where a controller sees it
        follows the host's rule (it may have become an OVN host meanwhile)."""
        plugged = [
            r.allocation
            for r in self.store.all()
            if r.lifecycle == Lifecycle.PLUGGED and r.allocation is not None
        ]
        try:
            self.transitions.ports.enforce_iface_id_rule(plugged)
        except Exception as exc:  # the rest of reconciliation still runs
            LOG.exception("could not place the iface-ids of plugged VIFs")
            report.errors.append(f"iface-id placement: {exc}")

    def _classify(self, links: frozenset[str], *, rebooted: bool) -> list[tuple[Action, VifRecord]]:
        work: list[tuple[Action, VifRecord]] = []
        for record in self.store.all():
            if record.plugin not in self.transitions.plugins or record.allocation is None:
                if record.lifecycle != Lifecycle.PLUGGED:
                    self.transitions.forget(record)
                continue
            if record.lifecycle == Lifecycle.PLUGGING:
                work.append((Action.ROLL_BACK, record))
            elif record.lifecycle == Lifecycle.UNPLUGGING:
                work.append((Action.FINISH_UNPLUG, record))
            elif rebooted and _lost_to_reboot(record, links):
                work.append((Action.FORGET, record))
            elif not self._present(record, links):
                work.append((Action.REPAIR, record))
        return work

    def _act_all(self, work: list[tuple[Action, VifRecord]]) -> list[str | None]:
        """Act on ``work`` concurrently; a progress line every
        ``PROGRESS_EVERY`` VIFs or ``PROGRESS_SECONDS`` (repairing hundreds
        of VIFs after a lost database takes seconds, which must not look
        like a hang to an operator or to systemd)."""
        workers = min(REPAIR_WORKERS, len(work))
        total, done, last = len(work), 0, time.monotonic()
        outcomes: list[str | None] = []
        with concurrent.futures.ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix="reconcile",
            initializer=threadnames.name_this_thread,
        ) as pool:
            for outcome in pool.map(self._act, work):
                outcomes.append(outcome)
                done += 1
                now = time.monotonic()
                if done < total and (done % PROGRESS_EVERY == 0 or now - last >= PROGRESS_SECONDS):
                    LOG.info("reconciliation: %d/%d VIF(s) done", done, total)
                    self._progress(done, total)
                    last = now
        self._progress(total, total)
        return outcomes

    def _progress(self, done: int, total: int) -> None:
        if self.on_progress is None:
            return
        try:
            self.on_progress(done, total)
        except Exception:  # a reporting hook must not fail reconciliation
            LOG.exception("reconciliation progress hook failed")

    def _act(self, item: tuple[Action, VifRecord]) -> str | None:
        """Finish, undo or repair one VIF; the error as text, or None."""
        action, record = item
        step: Callable[[VifRecord], object] = (
            self.transitions.repair if action is Action.REPAIR else self.transitions.unplug
        )
        try:
            step(record)
        except Exception as exc:  # one VIF must not stop the others
            LOG.exception("reconciliation of VIF %s failed", record.vif_id)
            return str(exc)
        return None

    def _present(self, record: VifRecord, links: frozenset[str]) -> bool:
        alloc = record.allocation
        assert alloc is not None
        if not set(alloc.created_devices) <= links:
            return False
        return not (
            alloc.created_port and alloc.port and not self.inventory.port_exists(alloc.port)
        )

    def leaks(self, snapshot: inventory_mod.Snapshot | None = None) -> Leaks:
        """What carries our marks and no VIF accounts for, as of now (or as
        of ``snapshot``, an inventory still current)."""
        if snapshot is None:
            snapshot = self.inventory.take()
        owned_ports: set[str] = set()
        owned_links: set[str] = set()
        for record in self.store.all():
            if record.allocation is None:
                continue
            if record.allocation.created_port and record.allocation.port:
                owned_ports.add(record.allocation.port)
            owned_links.update(record.allocation.created_devices)
            if record.allocation.port:
                # A shared device a VIF sits on (the linux bridge of the
                # linux_bridge plugin) is in use while any VIF names it.
                owned_links.add(record.allocation.port)
        return Leaks(
            ports={n: v for n, v in sorted(snapshot.ports.items()) if n not in owned_ports},
            links=sorted(snapshot.links - owned_links),
            marked_ports=len(snapshot.ports),
            marked_links=len(snapshot.links),
        )

    def _remove_leaks(
        self,
        report: Report,
        *,
        suspect: str | None,
        purge: bool,
        snapshot: inventory_mod.Snapshot | None,
    ) -> None:
        leaks = self.leaks(snapshot)
        reason = None if purge or not leaks else self._guard_reason(leaks, suspect)
        if reason is not None:
            report.held_ports = list(leaks.ports)
            report.held_links = list(leaks.links)
            self._hold(reason, leaks)
            return
        report.leaked_ports = list(leaks.ports)
        report.leaked_links = list(leaks.links)
        self.inventory.remove_ports(report.leaked_ports)
        self.inventory.delete_links(report.leaked_links)
        if self._held is not None:
            LOG.warning(
                "leak guard released: %s",
                "an operator purged the leaks" if purge else "nothing is left to remove",
            )
            self.store.meta_set(META_LEAK_GUARD, "")
            self._held = None

    def _guard_reason(self, leaks: Leaks, suspect: str | None) -> str | None:
        """Why these leaks must not be removed, or None when they may be."""
        if self._held is not None:
            return self._held[0]
        if suspect is not None:
            return suspect
        lim = self.limits
        for what, n, marked in (
            ("OVS ports", len(leaks.ports), leaks.marked_ports),
            ("devices", len(leaks.links), leaks.marked_links),
        ):
            if n > lim.max_removal:
                return (
                    f"{n} {what} carrying this daemon's marks are in no VIF of the state, "
                    f"more than [reconcile] max_leak_removal ({lim.max_removal})"
                )
            if n > lim.max_fraction * marked:
                return (
                    f"{n} of the {marked} {what} carrying this daemon's marks are in no VIF "
                    f"of the state, more than [reconcile] max_leak_fraction "
                    f"({lim.max_fraction:g})"
                )
        return None

    def _hold(self, reason: str, leaks: Leaks) -> None:
        """Keep the leaks; say so loudly the first time, and remember it."""
        if self._held is not None:
            return
        LOG.error(
            "reconciliation removes nothing: %s. The state is more likely lost than "
            "%d port(s) and %d device(s) leaked, so they are kept working; the compute "
            "service's next plug of each VIF adopts its port and tap, and "
            "'vifplug purge-leaks' lists and removes the rest",
            reason,
            len(leaks.ports),
            len(leaks.links),
        )
        self._held = (reason, time.time())
        self.store.meta_set(META_LEAK_GUARD, json.dumps({"reason": reason, "since": self._held[1]}))


def _lost_to_reboot(record: VifRecord, links: frozenset[str]) -> bool:
    """Every device vifplug made for this VIF is gone (as a reboot leaves it);
    a VIF whose devices others make (libvirt's tap, vhost-user) is not."""
    alloc = record.allocation
    assert alloc is not None
    return bool(alloc.created_devices) and not set(alloc.created_devices) & links


def _load_guard(value: str | None) -> tuple[str, float] | None:
    """The held guard kept in the state, or None (never held, or released)."""
    if not value:
        return None
    try:
        data = json.loads(value)
        return str(data["reason"]), float(data["since"])
    except (ValueError, KeyError, TypeError):
        return "the state records a held leak guard", 0.0
