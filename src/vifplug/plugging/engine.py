"""Everything behind the API, wired together and started in the right order.

The daemon builds one ``Engine`` from its settings; tests build one in-process
against a private OVS.  Order matters: state is loaded and OVSDB connected
before the host identity is written, and reconciliation runs before the
engine reports ready.

What the first reconciliation needs to know is read before anything is
written: whether the state is new or another host's (then leaks are not
removed, ``reconcile``'s leak guard) and whether the host rebooted since the
state was last reconciled (a boot id other than the one kept in the state).
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path

from vifplug import conf, exceptions, netdev, threadnames
from vifplug.ovsdb import connection, ops, views
from vifplug.plugging import inventory, lifecycle, networks, placement, ports, reconcile, service
from vifplug.plugins import base as plugin_base
from vifplug.plugins import loader
from vifplug.state import store as state_store

LOG = logging.getLogger(__name__)

STATE_FILE = "vifplug.sqlite"
META_SYSTEM_ID = "system_id"
META_BOOT_ID = "boot_id"
META_MACHINE_ID = "machine_id"  # the machine the system-id was recorded on
REPAIR_DEBOUNCE = 0.5


def read_machine_id(path: str) -> str | None:
    """This machine's id from ``path`` (systemd's machine-id: 32 hex digits),
    or None when there is none to trust (no file, empty, ``uninitialized``
    during a first boot, or not an id)."""
    try:
        text = Path(path).read_text().strip().lower()
    except (OSError, UnicodeDecodeError):
        return None
    if len(text) != 32 or any(c not in "0123456789abcdef" for c in text):
        return None
    return text


class Engine:
    """Connection, deleter, store, plugins, service and reconciler of one daemon."""

    def __init__(
        self,
        settings: conf.Settings,
        *,
        network_defs: Mapping[str, networks.NetworkDef] | None = None,
        owner: str = "vifplugd",
        on_commit: connection.CommitHook | None = None,
        on_progress: reconcile.ProgressHook | None = None,
    ) -> None:
        self.settings = settings
        self._on_progress = on_progress
        self.owner = owner
        self.placer = placement.Placer(settings.ovs, network_defs or {})
        self._on_commit = on_commit
        self.ovsdb: connection.Connection | None = None
        self.deleter: netdev.Deleter | None = None
        self.store: state_store.Store | None = None
        self.service: service.Service | None = None
        self.reconciler: reconcile.Reconciler | None = None
        self.system_id: str | None = None
        self.ready = threading.Event()
        self._repair_wanted = threading.Event()
        self._stopping = threading.Event()
        self._repairer: threading.Thread | None = None

    # -- start-up ------------------------------------------------------------------
    def start(self) -> Engine:
        s = self.settings
        Path(s.host.state_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        store = self.store = state_store.Store(os.path.join(s.host.state_dir, STATE_FILE))
        ovsdb = self.ovsdb = self._connect()
        deleter = self.deleter = netdev.Deleter.from_settings(s.netdev)
        plugins = loader.load(
            plugin_base.PluginContext(
                ovs=s.ovs, netdev=s.netdev, ovsdb=ovsdb, deleter=deleter, owner=self.owner
            )
        )
        gate = lifecycle.Gate()
        ovs_ports = ports.OvsPorts(ovsdb, iface_id_rule=s.ovs.inactive_iface_id)
        transitions = lifecycle.Transitions(store=store, plugins=plugins, ports=ovs_ports)
        self.service = service.Service(
            store=store,
            plugins=plugins,
            placer=self.placer,
            transitions=transitions,
            ports=ovs_ports,
            gate=gate,
            default_timeout=s.api.default_timeout,
        )
        self.reconciler = reconcile.Reconciler(
            store=store,
            transitions=transitions,
            gate=gate,
            inventory=inventory.Inventory(
                ovsdb=ovsdb, deleter=deleter, owner=self.owner, link_group=s.netdev.link_group
            ),
            limits=reconcile.LeakLimits(
                max_removal=s.reconcile.max_leak_removal,
                max_fraction=s.reconcile.max_leak_fraction,
            ),
            on_progress=self._on_progress,
        )
        suspect = self._suspect_state()
        boot_id, rebooted = self._boot()
        self.system_id = self._ensure_identity()
        self.reconciler.run(suspect=suspect, rebooted=rebooted)
        deleter.flush()  # what the reconciliation removed is gone before ready
        if boot_id is not None:
            store.meta_set(META_BOOT_ID, boot_id)
        ovsdb.add_resync_callback(self._on_resync)
        ovsdb.add_interface_watcher(self._on_interface)
        self._repairer = threadnames.Thread(
            target=self._repair_loop, name="reconcile-trigger", daemon=True
        )
        self._repairer.start()
        self.ready.set()
        return self

    def _connect(self) -> connection.Connection:
        return self._connection(self.settings.ovs.connection).start()

    def _connection(self, remote: str) -> connection.Connection:
        s = self.settings.ovs
        return connection.Connection(
            remote,
            timeout=s.timeout,
            probe_interval=s.probe_interval,
            max_batch=s.max_batch,
            hold_max=s.hold_max,
            gather_max=s.gather_max,
            pace_max=s.pace_max,
            on_commit=self._on_commit,
        )

    def _suspect_state(self) -> str | None:
        """Why the state may not describe this host, read before start-up
        writes anything: it is new (never used by a daemon: no system-id
        kept), or it kept another system-id than OVSDB holds (another
        host's, or restored from one)."""
        assert self.ovsdb is not None and self.store is not None
        kept = self.store.meta_get(META_SYSTEM_ID)
        if kept is None:
            return f"the state database {self.store.path} is new"
        host = self.ovsdb.host()
        current = host.external_ids.get("system-id") if host is not None else None
        if current is not None and current != kept:
            return (
                f"the state database {self.store.path} belongs to system-id {kept}, "
                f"and OVSDB holds {current}"
            )
        return None

    def _boot(self) -> tuple[str | None, bool]:
        """This boot's id, and whether it differs from the one kept in the
        state (the host rebooted since the state was last reconciled)."""
        assert self.store is not None
        path = self.settings.reconcile.boot_id_file
        try:
            boot_id = Path(path).read_text().strip() or None
        except OSError as exc:
            LOG.warning("cannot read the boot id from %s (%s); reboots go unnoticed", path, exc)
            return None, False
        kept = self.store.meta_get(META_BOOT_ID)
        rebooted = boot_id is not None and kept is not None and kept != boot_id
        if rebooted:
            LOG.warning(
                "the host rebooted since the state was last reconciled (boot id %s, was %s): "
                "VIFs whose devices the reboot took are forgotten, not recreated",
                boot_id,
                kept,
            )
        return boot_id, rebooted

    def _ensure_identity(self) -> str:
        """system-id: configured, else OVSDB's, else the file, else generated;
        whatever is chosen is kept in the state database, beside this
        machine's machine-id, and written to OVSDB.  Raises ``ClonedSystemId``,
        before writing anything, when the chosen one was recorded beside
        another machine-id (see ``_refuse_a_copy``)."""
        assert self.ovsdb is not None and self.store is not None
        h = self.settings.host
        chosen = h.system_id
        if chosen is None:
            host = self.ovsdb.host()
            chosen = host.external_ids.get("system-id") if host is not None else None
        if chosen is None:
            chosen = self.store.meta_get(META_SYSTEM_ID)
        if chosen is None and h.system_id_file and os.path.exists(h.system_id_file):
            chosen = Path(h.system_id_file).read_text().strip() or None
        if chosen is None:
            chosen = str(uuid.uuid4())
        machine = read_machine_id(h.machine_id_file)
        self._refuse_a_copy(chosen, machine)
        if self.store.meta_get(META_SYSTEM_ID) != chosen:
            self.store.meta_set(META_SYSTEM_ID, chosen)
        if machine is not None and self.store.meta_get(META_MACHINE_ID) != machine:
            self.store.meta_set(META_MACHINE_ID, machine)
        self.ovsdb.transact(
            ops.ensure_host_op(
                ops.HostSpec(
                    system_id=chosen,
                    system_type=h.system_type,
                    system_version=h.system_version,
                    enable_statistics=h.enable_statistics,
                )
            )
        )
        return chosen

    def _refuse_a_copy(self, system_id: str, machine: str | None) -> None:
        """A system-id the state recorded beside another machine-id was made
        for another machine: this host was cloned from it (the image carried
        the state, OVSDB's database, system-id.conf), and two hosts with one
        system-id make controllers fight over their ports (ovn-kubernetes #70,
        #635).  Nothing to compare (no machine-id here, none recorded, a
        state older than this check) is no evidence; a system-id other than
        the recorded one is this machine's own."""
        assert self.store is not None
        h = self.settings.host
        recorded = self.store.meta_get(META_MACHINE_ID)
        if machine is None or recorded is None or recorded == machine:
            return
        if self.store.meta_get(META_SYSTEM_ID) != system_id:
            return
        if h.allow_cloned_system_id:
            LOG.warning(
                "system-id %s was recorded on machine %s, not on this one (%s); keeping it "
                "because [DEFAULT] allow_cloned_system_id is set",
                system_id,
                recorded,
                machine,
            )
            return
        raise exceptions.ClonedSystemId(
            system_id=system_id,
            recorded_machine_id=recorded,
            machine_id=machine,
            machine_id_file=h.machine_id_file,
        )

    def _on_resync(self) -> None:
        """The OVSDB connection came back (ovsdb-server restarted, perhaps with
        a fresh database): write the host identity again, then converge."""
        try:
            self._ensure_identity()
        except Exception:
            LOG.exception("could not write the host identity after reconnecting")
        if self.reconciler is not None:
            self.reconciler.run()

    def _on_interface(self, view: views.InterfaceView) -> None:
        """ovs-vswitchd reports one of our interfaces broken (its device is gone,
        e.g. deleted behind our back or lost across an ovs-vswitchd restart):
        ask for a reconciliation, which recreates what is missing."""
        if not view.failed or view.external_ids.get(plugin_base.KEY_OWNER) != self.owner:
            return
        record = (
            self.store.get(view.external_ids.get(plugin_base.KEY_VIF_ID, ""))
            if self.store is not None
            else None
        )
        alloc = record.allocation if record is not None else None
        # Only a device we made can be repaired; one libvirt has yet to make
        # (create_tap=False) is simply not there yet.
        if alloc is not None and alloc.device in alloc.created_devices:
            self._repair_wanted.set()

    def _repair_loop(self) -> None:
        while not self._stopping.is_set():
            if not self._repair_wanted.wait(timeout=1.0):
                continue
            # Let a burst of reports (a restarting ovs-vswitchd) settle first.
            if self._stopping.wait(REPAIR_DEBOUNCE):
                return
            self._repair_wanted.clear()
            if self.reconciler is not None and self.ovsdb is not None and self.ovsdb.connected:
                try:
                    self.reconciler.run()
                except Exception:
                    LOG.exception("reconciliation after an interface error failed")

    # -- shared ------------------------------------------------------------------
    def leaks(self) -> reconcile.Leaks:
        """What carries our marks and no VIF accounts for (what a purge would remove)."""
        assert self.reconciler is not None
        return self.reconciler.leaks()

    def purge_leaks(self) -> reconcile.Report:
        """The operator's explicit purge: remove every leak, release the guard."""
        assert self.reconciler is not None
        return self.reconciler.purge()

    def reload_networks(self, defs: Mapping[str, networks.NetworkDef]) -> list[str]:
        """Swap in new network definitions (SIGHUP); returns the removed
        networks kept because they still have VIFs."""
        assert self.service is not None
        return self.service.reload_networks(defs)

    @property
    def is_ready(self) -> bool:
        """Connected and reconciled (not while a reconciliation runs)."""
        return (
            self.ready.is_set()
            and self.ovsdb is not None
            and self.ovsdb.connected
            and not (self.reconciler is not None and self.reconciler.running)
        )

    def stop(self) -> None:
        self.ready.clear()
        self._stopping.set()
        if self._repairer is not None:
            self._repairer.join(timeout=30)
        if self.ovsdb is not None:
            self.ovsdb.stop()
        if self.deleter is not None:
            self.deleter.close()
        if self.store is not None:
            self.store.close()
