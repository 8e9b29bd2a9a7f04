"""vifplug's Interface external_ids against the real OVN.

A private OVN (NB and SB ovsdb-servers, ovn-northd, ovn-controller; see
``tests/ovn_fixture.py``) runs against the session's sandbox Open vSwitch with
an integration bridge of its own (userspace datapath).  VIFs are plugged
through the in-process engine, exactly as the API would, and what
ovn-controller does with them is read back from the Southbound and Northbound
databases:

* ovn-controller binds a logical switch port to this chassis because of the
  ``iface-id`` vifplug wrote, and marks the interface ``ovn-installed``, which
  is what ``wait=ovn-installed`` waits for;
* a VIF whose ``iface-id`` names no logical port is never installed: the plug
  times out with ``PlugTimeout`` but stays plugged and listed (and is bound as
  soon as the logical port appears);
* unplugging releases the binding.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "functional"))

from engine_fixture import (
    instance,
    mac,
    ovs_vif,
    plug_request,
    running_engine,
    settings_for,
    vif_id_of,
)

import ovn_fixture
import ovs_sandbox
from ovn_fixture import unique
from vifplug import exceptions
from vifplug.plugging import engine as engine_mod
from vifplug.plugging import service
from vifplug.records import Lifecycle

pytestmark = [
    pytest.mark.ovn,
    pytest.mark.skipif(
        ovn_fixture.missing() is not None, reason=ovn_fixture.missing() or "OVN is available"
    ),
]

# Generous: ovn-controller's first full recompute on a loaded machine can take
# seconds; the plug returns as soon as ovn-installed appears.
OVN_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def ovn(ovs: ovs_sandbox.OvsSandbox) -> Iterator[ovn_fixture.OvnSandbox]:
    """A private OVN whose ovn-controller manages a fresh integration bridge."""
    with ovn_fixture.running_ovn(ovs, bridge=unique("vpint")) as o:
        yield o


@pytest.fixture
def eng(
    ovs: ovs_sandbox.OvsSandbox, ovn: ovn_fixture.OvnSandbox, tmp_path: Path
) -> Iterator[engine_mod.Engine]:
    """The engine, plugging into OVN's integration bridge, with OVN's chassis
    name as its system-id (so neither renames the chassis under the other)."""
    settings = settings_for(ovs.remote, tmp_path / "state", bridge=ovn.bridge)
    settings = dataclasses.replace(
        settings, host=dataclasses.replace(settings.host, system_id=ovn.system_id)
    )
    with running_engine(settings) as e:
        assert e.system_id == ovn.system_id
        yield e


@pytest.fixture
def switch(ovn: ovn_fixture.OvnSandbox) -> Iterator[str]:
    """A logical switch of the test's own, deleted afterwards."""
    name = unique("ls")
    ovn.nbctl("ls-add", name)
    try:
        yield name
    finally:
        ovn.nbctl("--if-exists", "ls-del", name)


def add_lsp(ovn: ovn_fixture.OvnSandbox, switch: str, name: str, address: str, ip: str) -> None:
    ovn.nbctl("lsp-add", switch, name, "--", "lsp-set-addresses", name, f"{address} {ip}")


def iface_external_ids(ovs: ovs_sandbox.OvsSandbox, name: str) -> dict[str, str]:
    import json

    out = ovs.vsctl("--format=json", "--columns=external_ids", "list", "Interface", name)
    return {k: v for k, v in json.loads(out)["data"][0][0][1]}


def ports_of(ovs: ovs_sandbox.OvsSandbox, bridge: str) -> set[str]:
    return set(ovs.vsctl("list-ports", bridge).split())


def wait_for(
    what: str, probe: Any, ovn: ovn_fixture.OvnSandbox, timeout: float = OVN_TIMEOUT
) -> Any:
    try:
        return ovn_fixture.wait_for(what, probe, timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{ovn.diagnostics()}") from None


def plug_bound(
    eng: engine_mod.Engine,
    ovn: ovn_fixture.OvnSandbox,
    switch: str,
) -> tuple[service.PlugRequest, str, float]:
    """Create a logical port, plug a VIF for it with wait=ovn-installed; return
    the request, the VIF's device and how long the plug took."""
    assert eng.service is not None
    name = unique("vpt")
    address = mac()
    vif = ovs_vif(bridge=ovn.bridge, name=name, address=address)
    iface_id = vif_id_of(vif)  # ovs_vif: port_profile.interface_id = the VIF id
    add_lsp(ovn, switch, iface_id, address, "10.0.0.%d" % (2 + len(eng.service.list())))
    request = plug_request(vif, wait="ovn-installed", timeout=OVN_TIMEOUT)
    started = time.monotonic()
    try:
        result = eng.service.plug(request)
    except exceptions.PlugTimeout:
        raise AssertionError(
            f"ovn-controller never installed {name}\n{ovn.diagnostics()}"
        ) from None
    elapsed = time.monotonic() - started
    assert result.created
    return request, name, elapsed


# -- the tests ----------------------------------------------------------------------------


def test_ovn_controller_binds_the_vif_by_iface_id(
    eng: engine_mod.Engine,
    ovn: ovn_fixture.OvnSandbox,
    ovs: ovs_sandbox.OvsSandbox,
    switch: str,
    record_property: Any,
) -> None:
    request, name, elapsed = plug_bound(eng, ovn, switch)
    iface_id = vif_id_of(request.vif)
    record_property("plug_ovn_installed_seconds", round(elapsed, 3))

    # The plug returned because ovn-controller wrote ovn-installed=true on the
    # Interface that carries vifplug's iface-id.
    ids = iface_external_ids(ovs, name)
    assert ids["iface-id"] == iface_id
    assert ids["iface-status"] == "active"
    assert ids.get("ovn-installed") == "true"
    assert name in ports_of(ovs, ovn.bridge)

    # The Southbound binding names our chassis, which is vifplug's system-id.
    assert ovn.binding_chassis(iface_id) == ovn.system_id == eng.system_id
    # ovn-controller sets Port_Binding.up; ovn-northd copies it to the NB port.
    wait_for(f"NB port {iface_id} up", lambda: ovn.lsp_up(iface_id), ovn)
    assert ovn.nbctl("get", "Logical_Switch_Port", iface_id, "up").strip() == "true"

    # The same request again is idempotent and ready at once.
    assert eng.service is not None
    again = eng.service.plug(dataclasses.replace(request, timeout=10.0))
    assert not again.created


def test_unknown_iface_id_times_out_but_stays_plugged(
    eng: engine_mod.Engine, ovn: ovn_fixture.OvnSandbox, ovs: ovs_sandbox.OvsSandbox, switch: str
) -> None:
    assert eng.service is not None
    name = unique("vpt")
    address = mac()
    vif = ovs_vif(bridge=ovn.bridge, name=name, address=address)
    vid = vif_id_of(vif)
    inst = instance()

    started = time.monotonic()
    with pytest.raises(exceptions.PlugTimeout) as info:
        eng.service.plug(plug_request(vif, inst, wait="ovn-installed", timeout=3.0))
    waited = time.monotonic() - started
    assert 3.0 <= waited < 3.0 + 15.0
    assert info.value.code == "plug_timeout"
    # The 504 says why, from what the host sees: attached, but not installed.
    assert "ovn-controller has not set ovn-installed" in info.value.message
    details = info.value.details()
    assert isinstance(details["ofport"], int) and details["ofport"] > 0
    assert "ovn-installed" in details["ovn_keys_missing"]

    # Plugged and listed all the same: tap, port, ofport, iface-id; not installed.
    record = eng.service.get(vid)
    assert record.lifecycle == Lifecycle.PLUGGED
    assert vid in {r.vif_id for r in eng.service.list()}
    assert name in ports_of(ovs, ovn.bridge)
    ids = iface_external_ids(ovs, name)
    assert ids["iface-id"] == vid
    assert "ovn-installed" not in ids
    assert int(ovs.vsctl("get", "Interface", name, "ofport").strip()) > 0
    assert not ovn.sb_find("Port_Binding", f"logical_port={vid}")

    # When the logical port appears later, ovn-controller binds the interface
    # vifplug already made; the caller's retry of the same plug now succeeds.
    add_lsp(ovn, switch, vid, address, "10.0.0.50")
    again = eng.service.plug(plug_request(vif, inst, wait="ovn-installed", timeout=OVN_TIMEOUT))
    assert not again.created
    assert iface_external_ids(ovs, name).get("ovn-installed") == "true"
    assert ovn.binding_chassis(vid) == ovn.system_id


def test_unplug_releases_the_port_binding(
    eng: engine_mod.Engine,
    ovn: ovn_fixture.OvnSandbox,
    ovs: ovs_sandbox.OvsSandbox,
    switch: str,
    record_property: Any,
) -> None:
    assert eng.service is not None
    request, name, _ = plug_bound(eng, ovn, switch)
    iface_id = vif_id_of(request.vif)
    assert ovn.binding_chassis(iface_id) == ovn.system_id
    wait_for(f"NB port {iface_id} up", lambda: ovn.lsp_up(iface_id), ovn)

    started = time.monotonic()
    eng.service.unplug(iface_id)
    assert name not in ports_of(ovs, ovn.bridge)
    wait_for(
        f"Port_Binding {iface_id} chassis cleared",
        lambda: ovn.binding_chassis(iface_id) is None,
        ovn,
    )
    record_property("unplug_release_seconds", round(time.monotonic() - started, 3))
    wait_for(f"NB port {iface_id} down", lambda: not ovn.lsp_up(iface_id), ovn)
    # The Port_Binding itself stays (it belongs to the logical port), unbound.
    assert ovn.sb_find("Port_Binding", f"logical_port={iface_id}")
    with pytest.raises(exceptions.VIFNotFound):
        eng.service.get(iface_id)


def test_ovn_claims_only_the_active_interface_of_an_iface_id(
    eng: engine_mod.Engine, ovn: ovn_fixture.OvnSandbox, ovs: ovs_sandbox.OvsSandbox, switch: str
) -> None:
    """A move of a logical port between two interfaces of this host (seed 000,
    ``iface-status``): the new one comes up inactive, is activated, the old one
    goes away.

    OVN 23.03 ignores ``iface-status``: given two interfaces with one
    ``iface-id`` it installs both and classifies the newest, even an inactive
    one.  On an OVN host (``ovn-remote`` is set) vifplug therefore keeps an
    inactive interface's iface-id under ``vifplug-iface-id``, and activating
    one moves the key in the same transaction: ovn-controller then claims,
    classifies and installs exactly the active interface, at every step.
    """
    assert eng.service is not None
    old_name, new_name = unique("vpo"), unique("vpn")
    iface_id = str(uuid.uuid4())
    address = mac()
    add_lsp(ovn, switch, iface_id, address, "10.0.0.77")
    old = ovs_vif(bridge=ovn.bridge, name=old_name, address=address, interface_id=iface_id)
    new = ovs_vif(bridge=ovn.bridge, name=new_name, address=address, interface_id=iface_id)

    eng.service.plug(plug_request(old, wait="ovn-installed", timeout=OVN_TIMEOUT))
    old_port = int(ovs.vsctl("get", "Interface", old_name, "ofport").strip())

    # The destination, plugged inactive: OVN never sees its iface-id.
    eng.service.plug(plug_request(new, iface_status="inactive", wait="ovn-installed"))
    new_port = int(ovs.vsctl("get", "Interface", new_name, "ofport").strip())
    new_ids = iface_external_ids(ovs, new_name)
    assert "iface-id" not in new_ids and new_ids["vifplug-iface-id"] == iface_id
    assert new_ids["iface-status"] == "inactive"
    assert iface_external_ids(ovs, old_name)["iface-id"] == iface_id
    claimed_only(ovn, ovs, iface_id, active=(old_name, old_port), inactive=(new_name, new_port))

    # Activate the destination: the key moves in one transaction.
    eng.service.set_status(vif_id_of(new), "active")
    old_ids, new_ids = (iface_external_ids(ovs, n) for n in (old_name, new_name))
    assert new_ids["iface-id"] == iface_id and "vifplug-iface-id" not in new_ids
    assert "iface-id" not in old_ids and old_ids["vifplug-iface-id"] == iface_id
    assert (old_ids["iface-status"], new_ids["iface-status"]) == ("inactive", "active")
    assert eng.service.get(vif_id_of(old)).iface_status == "inactive"
    claimed_only(ovn, ovs, iface_id, active=(new_name, new_port), inactive=(old_name, old_port))

    # And back: the source again.
    eng.service.set_status(vif_id_of(old), "active")
    claimed_only(ovn, ovs, iface_id, active=(old_name, old_port), inactive=(new_name, new_port))

    # The source goes away while inactive: OVN stays on the destination.
    eng.service.set_status(vif_id_of(new), "active")
    eng.service.unplug(vif_id_of(old))
    claimed_only(ovn, ovs, iface_id, active=(new_name, new_port), inactive=None)
    wait_for(f"NB port {iface_id} up", lambda: ovn.lsp_up(iface_id), ovn)


def claimed_only(
    ovn: ovn_fixture.OvnSandbox,
    ovs: ovs_sandbox.OvsSandbox,
    iface_id: str,
    *,
    active: tuple[str, int],
    inactive: tuple[str, int] | None,
) -> None:
    """ovn-controller classifies and installs the active interface, and not
    the inactive one; the binding is on this chassis."""
    name, port = active

    def settled() -> bool:
        classified = ovn.classified_in_ports()
        installed = iface_external_ids(ovs, name).get("ovn-installed") == "true"
        other = inactive is None or (
            inactive[1] not in classified
            and iface_external_ids(ovs, inactive[0]).get("ovn-installed") != "true"
        )
        return port in classified and installed and other

    wait_for(f"OVN on {name} only", settled, ovn)
    assert ovn.binding_chassis(iface_id) == ovn.system_id


def test_reconciliation_hides_an_inactive_interface_on_a_host_that_became_ovn(
    ovs: ovs_sandbox.OvsSandbox, ovn: ovn_fixture.OvnSandbox, switch: str, tmp_path: Path
) -> None:
    """Two interfaces plugged while vifplug kept every iface-id (``keep``):
    restarted with the default rule on this OVN host, reconciliation moves the
    inactive one's key away, and OVN settles on the active interface."""
    base = settings_for(ovs.remote, tmp_path / "state", bridge=ovn.bridge)
    host = dataclasses.replace(base.host, system_id=ovn.system_id)
    keep = dataclasses.replace(
        base, host=host, ovs=dataclasses.replace(base.ovs, inactive_iface_id="keep")
    )
    iface_id, address = str(uuid.uuid4()), mac()
    add_lsp(ovn, switch, iface_id, address, "10.0.0.88")
    names = unique("vpa"), unique("vpb")
    vifs = [
        ovs_vif(bridge=ovn.bridge, name=n, address=address, interface_id=iface_id) for n in names
    ]
    owner = f"test-{uuid.uuid4().hex[:8]}"
    eng = engine_mod.Engine(keep, owner=owner).start()
    try:
        assert eng.service is not None
        eng.service.plug(plug_request(vifs[0], wait="ovn-installed", timeout=OVN_TIMEOUT))
        eng.service.plug(plug_request(vifs[1], iface_status="inactive"))
        assert iface_external_ids(ovs, names[1])["iface-id"] == iface_id  # kept, as told
    finally:
        eng.stop()
    ports = [int(ovs.vsctl("get", "Interface", n, "ofport").strip()) for n in names]
    with running_engine(dataclasses.replace(keep, ovs=base.ovs), owner=owner) as again:
        assert again.service is not None
        ids = iface_external_ids(ovs, names[1])
        assert "iface-id" not in ids and ids["vifplug-iface-id"] == iface_id
        claimed_only(ovn, ovs, iface_id, active=(names[0], ports[0]), inactive=(names[1], ports[1]))
