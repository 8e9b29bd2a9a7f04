"""Failover pairs (libvirt's <teaming>, seed 003) and the hostdev plugin,
against a real vifplugd and a real Open vSwitch.

The transient members here are plain ``<hostdev>`` devices (``dev_type``
``generic``) found in a sysfs tree made in a temporary directory
(``[netdev] sysfs_root``): this machine has no SR-IOV device, and a generic
hostdev is only looked up, never touched.  The VF path (``dev_type``
``ethernet``) is unit-tested in tests/unit/test_vf.py.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import primitives as prim
import pytest
from daemon_fixture import Daemon, DaemonFactory
from test_api import assert_error, ports

import ovs_sandbox

PCI_A = "0000:3b:00.2"
PCI_B = "0000:3b:00.3"


@pytest.fixture
def sysfs(workdir: Path) -> Path:
    """A fake sysfs with two PCI functions (no netdev: as if bound to vfio-pci)."""
    root = workdir / "sysfs"
    for address in (PCI_A, PCI_B):
        (root / "bus/pci/devices" / address).mkdir(parents=True)
    return root


@pytest.fixture
def daemon(daemon_factory: DaemonFactory, sysfs: Path) -> Daemon:
    return daemon_factory({"netdev": {"sysfs_root": str(sysfs)}})


def _mac() -> str:
    return "fa:16:3e:%02x:%02x:%02x" % tuple(uuid.uuid4().bytes[:3])


def _plug(client: httpx.Client, vif: dict[str, Any], **extra: Any) -> httpx.Response:
    return client.post("/v1/vifs", json=prim.body(vif, **extra))


def _persistent(client: httpx.Client, daemon: Daemon, mac: str) -> str:
    vif = prim.vif_ovs(bridge=daemon.bridge, mac=mac)
    r = _plug(client, vif, teaming={"type": "persistent"})
    assert r.status_code == 201, r.text
    assert (r.json()["teaming_type"], r.json()["teaming_peer"]) == ("persistent", None)
    return str(prim.data(vif)["id"])


def _transient(persistent: str, mac: str, address: str = PCI_A) -> tuple[str, dict[str, Any]]:
    vif = prim.vif_hostdev(dev_address=address, mac=mac)
    return str(prim.data(vif)["id"]), prim.body(
        vif, teaming={"type": "transient", "persistent": persistent}
    )


def _cli(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vifplug.cli", "--socket", daemon.socket_path, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _fields(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        out[key.strip()] = value.strip()
    return out


def test_host_info_lists_the_hostdev_plugin(daemon: Daemon) -> None:
    with daemon.client() as c:
        info = c.get("/v1/host-info").json()
    plugins = {
        p["versioned_object.data"]["plugin_name"]: p["versioned_object.data"]
        for p in info["versioned_object.data"]["plugin_info"]
    }
    (vif_info,) = plugins["hostdev"]["vif_info"]
    assert vif_info["versioned_object.data"]["vif_object_name"] == "VIFHostDevice"
    assert vif_info["versioned_object.data"]["min_version"] == "1.0"
    assert vif_info["versioned_object.data"]["max_version"] == "1.0"


def test_a_pair_is_shown_on_both_members_and_the_persistent_one_is_released_last(
    daemon: Daemon, ovs: ovs_sandbox.OvsSandbox
) -> None:
    mac = _mac()
    with daemon.client() as c:
        persistent = _persistent(c, daemon, mac)
        transient, body = _transient(persistent, mac.upper())  # MACs compare case-blind
        r = c.post("/v1/vifs", json=body)
        assert r.status_code == 201, r.text
        shown = r.json()
        assert (shown["plugin"], shown["device"], shown["bridge"]) == ("hostdev", PCI_A, None)
        assert (shown["teaming_type"], shown["teaming_peer"]) == ("transient", persistent)
        assert c.post("/v1/vifs", json=body).status_code == 200  # the same request again

        p = c.get(f"/v1/vifs/{persistent}").json()
        assert (p["teaming_type"], p["teaming_peer"]) == ("persistent", transient)
        listed = {v["vif_id"]: v for v in c.get("/v1/vifs").json()["vifs"]}
        assert listed[transient]["teaming_peer"] == persistent
        assert listed[persistent]["teaming_peer"] == transient

        # The CLI shows the pair on both members.
        out = _cli(daemon, "show", persistent)
        assert out.returncode == 0, out.stderr
        assert _fields(out.stdout)["Teaming"] == "persistent"
        assert _fields(out.stdout)["Teaming peer"] == transient
        out = _cli(daemon, "show", transient)
        assert (_fields(out.stdout)["Teaming"], _fields(out.stdout)["Teaming peer"]) == (
            "transient",
            persistent,
        )
        table = _cli(daemon, "list").stdout.splitlines()
        assert "TEAMING" in table[0].split()
        rows = {line.split()[0]: line.split() for line in table[1:]}
        assert rows[persistent][-1] == f"persistent:{transient[:8]}"
        assert rows[transient][-1] == f"transient:{persistent[:8]}"

        # During a migration the transient member is released first.
        error = assert_error(c.delete(f"/v1/vifs/{persistent}"), 409, "teaming_member_plugged")
        assert error["details"] == {"vif_id": persistent, "peer_id": transient}
        assert c.get(f"/v1/vifs/{persistent}").json()["lifecycle"] == "plugged"
        assert len(ports(ovs, daemon.bridge)) == 1  # the persistent member's port stayed

        assert c.delete(f"/v1/vifs/{transient}").status_code == 204
        p = c.get(f"/v1/vifs/{persistent}").json()
        assert (p["teaming_type"], p["teaming_peer"]) == ("persistent", None)
        assert c.delete(f"/v1/vifs/{persistent}").status_code == 204
        assert ports(ovs, daemon.bridge) == []


def test_a_transient_member_is_refused_unless_its_persistent_member_fits(
    daemon: Daemon,
) -> None:
    mac = _mac()
    with daemon.client() as c:
        plain = prim.vif_ovs(bridge=daemon.bridge, mac=mac)
        assert _plug(c, plain).status_code == 201
        persistent = _persistent(c, daemon, _mac())
        mac_p = c.get(f"/v1/vifs/{persistent}").json()["mac"]

        cases: list[tuple[dict[str, Any], int, str]] = [
            # no such VIF on this host
            (_transient(str(uuid.uuid4()), mac)[1], 409, "teaming_peer_not_plugged"),
            # plugged, but without teaming
            (_transient(prim.data(plain)["id"], mac)[1], 400, "teaming_mismatch"),
            # a persistent member with another MAC
            (_transient(persistent, mac)[1], 400, "teaming_mismatch"),
            # the PCI device does not exist
            (
                _transient(persistent, mac_p, address="0000:3b:01.0")[1],
                400,
                "physical_device_not_found",
            ),
            # a transient member that is not a hostdev
            (
                prim.body(
                    prim.vif_ovs(bridge=daemon.bridge, mac=mac_p),
                    teaming={"type": "transient", "persistent": persistent},
                ),
                400,
                "invalid_request",
            ),
            # a transient member that names no persistent member
            (
                prim.body(
                    prim.vif_hostdev(dev_address=PCI_A, mac=mac_p),
                    teaming={"type": "transient"},
                ),
                400,
                "invalid_request",
            ),
            # a hostdev cannot be the persistent member
            (
                prim.body(
                    prim.vif_hostdev(dev_address=PCI_A, mac=mac_p),
                    teaming={"type": "persistent"},
                ),
                400,
                "invalid_request",
            ),
        ]
        for body, status, code in cases:
            error = assert_error(c.post("/v1/vifs", json=body), status, code)
            vif_id = body["vif"]["versioned_object.data"]["id"]
            assert c.get(f"/v1/vifs/{vif_id}").status_code == 404, error  # nothing recorded
            assert c.get(f"/v1/vifs/{persistent}").json()["teaming_peer"] is None

        # The pair forms once the request fits; then a second transient
        # member, and a transient member that names a transient one, are refused.
        transient, body = _transient(persistent, mac_p)
        assert c.post("/v1/vifs", json=body).status_code == 201
        _, second = _transient(persistent, mac_p, address=PCI_B)
        assert_error(c.post("/v1/vifs", json=second), 409, "teaming_peer_taken")
        _, chained = _transient(transient, mac_p, address=PCI_B)
        assert_error(c.post("/v1/vifs", json=chained), 400, "teaming_mismatch")
        # The same hostdev cannot be given twice.
        other = _persistent(c, daemon, _mac())
        mac_o = c.get(f"/v1/vifs/{other}").json()["mac"]
        _, same_device = _transient(other, mac_o, address=PCI_A)
        assert_error(c.post("/v1/vifs", json=same_device), 409, "device_in_use")
        # The same transient VIF id with another teaming is other content.
        changed = dict(body, teaming={"type": "transient", "persistent": other})
        assert_error(c.post("/v1/vifs", json=changed), 409, "vif_conflict")
        assert c.get(f"/v1/vifs/{other}").json()["teaming_peer"] is None
        assert c.get(f"/v1/vifs/{persistent}").json()["teaming_peer"] == transient


def test_a_persistent_member_plugged_twice_with_other_teaming_is_a_conflict(
    daemon: Daemon,
) -> None:
    vif = prim.vif_ovs(bridge=daemon.bridge)
    with daemon.client() as c:
        assert _plug(c, vif).status_code == 201
        assert_error(_plug(c, vif, teaming={"type": "persistent"}), 409, "vif_conflict")
        assert c.get(f"/v1/vifs/{prim.data(vif)['id']}").json()["teaming_type"] is None


def test_the_pair_survives_a_restart(
    daemon_factory: DaemonFactory, sysfs: Path, ovs: ovs_sandbox.OvsSandbox
) -> None:
    first = daemon_factory({"netdev": {"sysfs_root": str(sysfs)}})
    mac = _mac()
    with first.client() as c:
        persistent = _persistent(c, first, mac)
        transient, body = _transient(persistent, mac)
        assert c.post("/v1/vifs", json=body).status_code == 201
    assert first.stop() == 0

    second = daemon_factory(config=first.config)
    with second.client() as c:
        p = c.get(f"/v1/vifs/{persistent}").json()
        t = c.get(f"/v1/vifs/{transient}").json()
        assert (p["lifecycle"], p["teaming_type"], p["teaming_peer"]) == (
            "plugged",
            "persistent",
            transient,
        )
        assert (t["lifecycle"], t["teaming_type"], t["teaming_peer"]) == (
            "plugged",
            "transient",
            persistent,
        )
        assert c.post("/v1/vifs", json=body).status_code == 200  # the digest includes teaming
        assert_error(c.delete(f"/v1/vifs/{persistent}"), 409, "teaming_member_plugged")
        assert c.delete(f"/v1/vifs/{transient}").status_code == 204
        assert c.delete(f"/v1/vifs/{persistent}").status_code == 204
        assert ports(ovs, second.bridge) == []
