"""Documented refusals that had no test, against the real daemon.

docs/state.md and the contract promise that a daemon refuses to start on a
state it cannot safely own: one another vifplugd holds, or one a newer
vifplugd wrote.  Each refusal leaves the state as it was.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
import uuid
from pathlib import Path

import host_view
import primitives as prim
from daemon_fixture import DaemonFactory, base_config, start_daemon
from engine_fixture import instance, mac

import ovs_sandbox
from vifplug import objects


def test_a_second_daemon_on_the_same_state_is_refused_at_start(
    daemon_factory: DaemonFactory, ovs: ovs_sandbox.OvsSandbox, workdir: Path
) -> None:
    first = daemon_factory()
    # Same state directory, its own socket and marks otherwise.
    config = base_config(workdir / "second", ovs.remote)
    config["DEFAULT"]["state_dir"] = first.config["DEFAULT"]["state_dir"]
    second = start_daemon(workdir / "second", config, wait=False)
    try:
        assert second.wait(60) != 0
        assert "second vifplugd" in second.stderr(), second.stderr()
        # The first one is untouched and still serves.
        with first.client() as c:
            assert c.get("/readyz").status_code == 200
    finally:
        if second.proc.poll() is None:
            second.proc.kill()
            second.proc.wait()


def test_state_written_by_a_newer_vifplugd_is_refused_at_start(
    daemon_factory: DaemonFactory, ovs: ovs_sandbox.OvsSandbox, workdir: Path
) -> None:
    first = daemon_factory()
    state_dir = Path(first.config["DEFAULT"]["state_dir"])
    assert first.stop() == 0
    (db,) = state_dir.glob("*.sqlite")
    conn = sqlite3.connect(db)
    try:
        conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
        conn.commit()
    finally:
        conn.close()
    before = db.read_bytes()
    config = base_config(workdir / "newer", ovs.remote)
    config["DEFAULT"]["state_dir"] = str(state_dir)
    d = start_daemon(workdir / "newer", config, wait=False)
    try:
        assert d.wait(60) != 0
        log = d.stderr()
        assert "cannot start" in log and "newer" in log and "upgrade vifplugd" in log, log
        assert db.read_bytes() == before, "the refusal changed the state"
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


def _direct_body(network: str) -> dict[str, object]:
    vif_id = str(uuid.uuid4())
    vif = objects.vif.VIFDirect(
        id=vif_id,
        address=mac(),
        plugin="direct",
        vif_name="vpd" + vif_id[:12],
        network=objects.network.Network(id=str(uuid.uuid4()), label=network),
    )
    return {"vif": vif.obj_to_primitive(), "instance": instance()}


def test_pool_errors_through_the_api(daemon_factory: DaemonFactory, nics: list[str]) -> None:
    """A passthrough pool of one device: the second VIF gets 409
    ``pool_exhausted`` and nothing; a VIF naming a direct network with no
    configured devices of its own parent gets ``physical_device_not_found``."""
    d = daemon_factory(
        {"network:solo": {"type": "direct", "devices": nics[:1], "mode": "passthrough"}}
    )
    first, second = _direct_body("solo"), _direct_body("solo")
    with d.client() as c:
        assert c.post("/v1/vifs", json=first).status_code == 201
        before = {lk.name for lk in host_view.links()}
        r = c.post("/v1/vifs", json=second)
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "pool_exhausted"
        assert r.json()["error"]["details"]["network"] == "solo"
        assert {lk.name for lk in host_view.links()} == before
        assert [v["vif_id"] for v in c.get("/v1/vifs").json()["vifs"]] == [
            first["vif"]["versioned_object.data"]["id"]  # type: ignore[index]
        ]
        # A VIFDirect that names no configured network and a PCI address
        # this host does not have.
        stray = _direct_body("no-such-network")
        stray["vif"]["versioned_object.data"]["dev_address"] = "0000:ff:1f.7"  # type: ignore[index]
        r = c.post("/v1/vifs", json=stray)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "physical_device_not_found"
        assert {lk.name for lk in host_view.links()} == before


def test_ovsdb_timeout_over_http_is_504_and_leaves_nothing(
    daemon_factory: DaemonFactory, ovs: ovs_sandbox.OvsSandbox
) -> None:
    d = daemon_factory({"ovs": {"timeout": 2.0}})
    vif = prim.vif_ovs(bridge=d.bridge)
    name = prim.data(vif)["vif_name"]
    pid = ovs.ovsdb_pid
    assert pid is not None
    with d.client() as c:
        os.kill(pid, signal.SIGSTOP)
        try:
            r = c.post("/v1/vifs", json=prim.body(vif))
        finally:
            os.kill(pid, signal.SIGCONT)
        assert r.status_code == 504, r.text
        assert r.json()["error"]["code"] == "ovsdb_timeout"
        # The plug was rolled back: not listed, and once ovsdb-server caught
        # up, no port (the removal was queued behind a late commit) and no tap.
        assert c.get("/v1/vifs").json()["vifs"] == []

        def port_or_tap() -> bool:
            port = ovs.vsctl("--columns=name", "find", "Interface", f"name={name}").strip()
            return bool(port) or any(lk.name == name for lk in host_view.links())

        deadline = time.monotonic() + 60
        while port_or_tap() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not port_or_tap()
