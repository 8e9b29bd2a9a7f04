"""Documented behaviour of the plug path that had no test, against real OVS.

Each test makes the documented situation happen for real (ovsdb-server
paused, a port deleted behind vifplug's back, an unplug racing a plug's wait,
a reconciliation in progress) and checks what docs/api.md and docs/state.md
promise: the error code, and what the state and the host hold afterwards.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_fixture import (
    ovs_vif,
    plug_request,
    running_engine,
    settings_for,
    vif_id_of,
)

import ovs_sandbox
from helpers import paused, unique
from vifplug import exceptions
from vifplug.api import errors
from vifplug.plugging import engine as engine_mod
from vifplug.records import Lifecycle

DEADLINE = 60.0


@pytest.fixture
def eng(ovs: ovs_sandbox.OvsSandbox, tmp_path: Path) -> Iterator[engine_mod.Engine]:
    br = unique("vpbr")
    # A short OVSDB timeout, so that a paused ovsdb-server fails a write soon.
    with running_engine(settings_for(ovs.remote, tmp_path / "state", bridge=br, timeout=3.0)) as e:
        try:
            yield e
        finally:
            ovs.vsctl("--if-exists", "del-br", br)


def links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def ports(ovs: ovs_sandbox.OvsSandbox, bridge: str) -> set[str]:
    """The bridge's ports; none before the first plug has made the bridge."""
    if bridge not in ovs.vsctl("list-br").split():
        return set()
    return set(ovs.vsctl("list-ports", bridge).split())


def bridge_of(eng: engine_mod.Engine) -> str:
    return eng.settings.ovs.integration_bridge


def wait_until(what: str, condition: object) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_an_unplug_that_failed_stays_unplugging_and_a_retry_finishes_it(
    eng: engine_mod.Engine, ovs: ovs_sandbox.OvsSandbox
) -> None:
    assert eng.service is not None
    name = unique("vpu")
    vif = ovs_vif(bridge=bridge_of(eng), name=name)
    eng.service.plug(plug_request(vif))
    vif_id = vif_id_of(vif)

    with paused(ovs.ovsdb_pid), pytest.raises(exceptions.OvsdbTimeout) as info:
        eng.service.unplug(vif_id)
    assert errors.STATUS[info.value.code] == 504
    # The intent is recorded: the VIF is listed as unplugging, its tap kept
    # until the port is gone (never a port without its tap).
    assert eng.service.get(vif_id).lifecycle == Lifecycle.UNPLUGGING
    assert name in links()

    # ovsdb-server is back (the timed-out removal may have committed since):
    # the retry finishes the unplug.
    eng.service.unplug(vif_id)
    with pytest.raises(exceptions.VIFNotFound):
        eng.service.get(vif_id)
    assert name not in ports(ovs, bridge_of(eng))
    wait_until(f"{name} deleted", lambda: name not in links())


def test_status_change_of_a_port_deleted_behind_vifplugs_back_is_interface_error(
    eng: engine_mod.Engine, ovs: ovs_sandbox.OvsSandbox
) -> None:
    assert eng.service is not None
    name = unique("vpd")
    vif = ovs_vif(bridge=bridge_of(eng), name=name)
    eng.service.plug(plug_request(vif))
    ovs.vsctl("del-port", bridge_of(eng), name)
    wait_until("the replica to lose the port", lambda: eng.ovsdb and not eng.ovsdb.interface(name))

    with pytest.raises(exceptions.InterfaceError) as info:
        eng.service.set_status(vif_id_of(vif), "inactive")
    assert errors.STATUS[info.value.code] == 502
    assert info.value.details()["device"] == name
    # Nothing was recorded: the VIF keeps the status it had.
    assert eng.service.get(vif_id_of(vif)).iface_status == "active"


def test_an_unplug_during_the_plugs_wait_ends_the_wait_with_interface_gone(
    eng: engine_mod.Engine, ovs: ovs_sandbox.OvsSandbox
) -> None:
    """The tap is libvirt's to make (``create_tap=False``), so the plug waits
    for an ofport that cannot come; an unplug of the same VIF meanwhile
    removes the port and the wait ends at once, not at its timeout."""
    assert eng.service is not None
    service = eng.service
    name = unique("vpg")
    vif = ovs_vif(bridge=bridge_of(eng), name=name, profile={"create_tap": False})
    outcome: list[BaseException] = []

    def plug() -> None:
        try:
            service.plug(plug_request(vif, timeout=300.0))
        except BaseException as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=plug)
    waiter.start()
    wait_until("the port in OVSDB", lambda: name in ports(ovs, bridge_of(eng)))
    wait_until(
        "the plug acknowledged in the state",
        lambda: (
            service.store.get(vif_id_of(vif)) is not None
            and service.store.get(vif_id_of(vif)).lifecycle == Lifecycle.PLUGGED
        ),  # type: ignore[union-attr]
    )
    started = time.monotonic()
    service.unplug(vif_id_of(vif))
    waiter.join(timeout=DEADLINE)
    assert not waiter.is_alive()
    assert time.monotonic() - started < DEADLINE  # far from the 300 s timeout
    assert len(outcome) == 1 and isinstance(outcome[0], exceptions.InterfaceGone)
    assert errors.STATUS[outcome[0].code] == 409


def test_plugs_wait_while_reconciliation_holds_the_gate(
    eng: engine_mod.Engine, ovs: ovs_sandbox.OvsSandbox
) -> None:
    assert eng.service is not None and eng.reconciler is not None
    service, reconciler = eng.service, eng.reconciler
    name = unique("vph")
    vif = ovs_vif(bridge=bridge_of(eng), name=name)
    inside, release = threading.Event(), threading.Event()
    take = reconciler.inventory.take

    def slow_take() -> object:
        inside.set()
        release.wait(DEADLINE)
        return take()

    done: list[object] = []
    reconciler.inventory.take = slow_take  # type: ignore[method-assign]
    try:
        runner = threading.Thread(target=reconciler.run)
        runner.start()
        assert inside.wait(DEADLINE)
        plugger = threading.Thread(target=lambda: done.append(service.plug(plug_request(vif))))
        plugger.start()
        # While reconciliation runs, the plug has recorded and made nothing.
        time.sleep(0.5)
        assert service.store.get(vif_id_of(vif)) is None
        assert name not in links() and not done
        release.set()
        runner.join(DEADLINE)
        plugger.join(DEADLINE)
    finally:
        release.set()
        del reconciler.inventory.take  # back to the class's method
    assert done and service.get(vif_id_of(vif)).lifecycle == Lifecycle.PLUGGED
    assert name in ports(ovs, bridge_of(eng))


def test_work_submitted_while_stopping_is_refused_with_shutting_down(
    ovs: ovs_sandbox.OvsSandbox, tmp_path: Path
) -> None:
    """Once the engine is stopping, OVSDB takes no new writes: a plug that
    reaches it then is refused (503 ``shutting_down``) and leaves no tap."""
    br = unique("vpbr")
    name = unique("vps")
    vif = ovs_vif(bridge=br, name=name)
    with running_engine(settings_for(ovs.remote, tmp_path / "state", bridge=br)) as eng:
        assert eng.service is not None and eng.ovsdb is not None
        eng.ovsdb.stop()
        with pytest.raises(exceptions.ShuttingDown) as info:
            eng.service.plug(plug_request(vif))
        assert errors.STATUS[info.value.code] == 503
        with pytest.raises(exceptions.VIFNotFound):
            eng.service.get(vif_id_of(vif))
        wait_until(f"{name} removed", lambda: name not in links())
    ovs.vsctl("--if-exists", "del-br", br)


def test_a_pass_that_acts_on_no_vif_lists_the_host_once(
    eng: engine_mod.Engine, ovs: ovs_sandbox.OvsSandbox
) -> None:
    """Its first inventory is still the host's (the gate held plugs off), so
    the leak check reuses it; a pass that acted lists the host again, since
    what it rolled back or repaired changed the devices."""
    assert eng.service is not None and eng.reconciler is not None
    service, reconciler = eng.service, eng.reconciler
    vif = ovs_vif(bridge=bridge_of(eng), name=unique("vpo"))
    service.plug(plug_request(vif))
    take = reconciler.inventory.take
    calls: list[int] = []

    def counted() -> object:
        calls.append(1)
        return take()

    reconciler.inventory.take = counted  # type: ignore[method-assign]
    try:
        quiet = reconciler.run()
        assert len(calls) == 1 and not quiet.leaked_links and not quiet.repaired
        calls.clear()
        record = service.get(vif_id_of(vif))
        assert record.allocation is not None
        ovs.vsctl("del-port", record.allocation.port)  # lost: the pass repairs it
        acted = reconciler.run()
        assert acted.repaired == [vif_id_of(vif)]
        assert len(calls) == 2
    finally:
        del reconciler.inventory.take  # back to the class's method
    assert record.allocation.port in ports(ovs, bridge_of(eng))
