"""A live migration between two hypervisors, as Nova, libvirt and OVN drive it.

Two hypervisors, each a network namespace of the test's own with its own
Open vSwitch (userspace datapath), its own ovn-controller (chassis ``hv1``,
``hv2``) and its own vifplugd (the real daemon, over HTTP), against one
private OVN central (NB, SB, northd; ``tests/ovn_fixture.py``).  A veth pair
joins the two namespaces; each end is a port of a ``br-phy`` bridge whose
internal interface carries the hypervisor's geneve endpoint (``ovn-encap-ip``,
192.0.2.0/24, TEST-NET-1), as the Open vSwitch "userspace tunneling" guide
sets it up: ovs-vswitchd routes and ARPs for tunnel endpoints itself, through
a bridge that has the address.

The sequence is Nova's (pre_live_migration plugs on the destination, QEMU
announces itself with a RARP, post_live_migration unplugs the source) with
Neutron's multi-chassis binding (``requested-chassis=hv1,hv2``,
``activation-strategy=rarp``), and every step is checked on both hosts:
what vifplug wrote, what ovn-controller did with it, where the Port_Binding
is, and that frames flow through OVN between the migrating VM and a second
VM that stays on hv1.

Every process is stopped by its pid, then the namespaces (and with them the
veths and taps) are deleted.

``pytest -s`` prints the Interface rows of both hosts and the Port_Binding
after every step; docs/integration-guide.md's worked example is one such run.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import json
import os
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "functional"))

import primitives as prim
from daemon_fixture import Daemon, base_config, merge, start_daemon
from engine_fixture import Frame, mac, mac_bytes, open_tap

import ovn_fixture
import ovs_sandbox
from ovn_fixture import unique

pytestmark = [
    pytest.mark.ovn,
    pytest.mark.skipif(
        ovn_fixture.missing() is not None, reason=ovn_fixture.missing() or "OVN is available"
    ),
]

# Generous: conditions are waited for, never slept on; a cold 2-core machine
# running two OVS, two ovn-controllers and two daemons is slow to converge.
TIMEOUT = 60.0
SUBNET = "192.0.2.%d"  # TEST-NET-1: only ever on the veths of our own namespaces
CLONE_NEWNET = 0x40000000


# -- one hypervisor ------------------------------------------------------------------------


@dataclasses.dataclass
class Hypervisor:
    name: str
    netns: str
    ovs: ovs_sandbox.OvsSandbox
    bridge: str
    encap_ip: str
    controller: ovn_fixture.Controller | None = None
    daemon: Daemon | None = None

    def client(self) -> Any:
        assert self.daemon is not None
        return self.daemon.client(timeout=TIMEOUT + 30)

    def interfaces(self, iface_id: str) -> list[dict[str, Any]]:
        """The interfaces of ``iface_id`` on this host, shown or hidden key."""
        rows = []
        for key in ("iface-id", "vifplug-iface-id"):
            out = self.ovs.vsctl(
                "--format=json",
                "--columns=name,ofport,external_ids",
                "find",
                "Interface",
                f"external_ids:{key}={iface_id}",
            )
            for name, ofport, ids in json.loads(out)["data"]:
                rows.append(
                    {
                        "name": name,
                        "ofport": ofport if isinstance(ofport, int) else None,
                        "external_ids": dict(ids[1]),
                    }
                )
        return sorted(rows, key=lambda r: r["name"])

    def pids(self) -> list[int]:
        """Every daemon this hypervisor runs, to check they are gone afterwards."""
        found = [self.ovs.ovsdb_pid, self.ovs.vswitchd_pid]
        found.append(self.controller.pid if self.controller else None)
        found.append(self.daemon.pid if self.daemon else None)
        return [p for p in found if p is not None]

    def vifs(self) -> dict[str, str | None]:
        """vif id -> iface_status, as this host's vifplugd lists them."""
        with self.client() as c:
            r = c.get("/v1/vifs")
        assert r.status_code == 200, r.text
        return {v["vif_id"]: v["iface_status"] for v in r.json()["vifs"]}

    def tunnels(self) -> dict[str, str]:
        """geneve port -> remote_ip, as ovn-controller made them."""
        out = self.ovs.vsctl(
            "--format=json", "--columns=name,options", "find", "Interface", "type=geneve"
        )
        return {name: dict(opts[1]).get("remote_ip", "") for name, opts in json.loads(out)["data"]}

    def open_tap(self, name: str) -> int:
        """Attach to a tap of this host through /dev/net/tun, as QEMU does.

        The tun driver binds a file to the namespace of the thread that opens
        it, so a short-lived thread enters the namespace (setns is per
        thread) and opens it there."""
        out: dict[str, Any] = {}

        def enter_and_open() -> None:
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
                ns = os.open(f"/run/netns/{self.netns}", os.O_RDONLY)
                try:
                    if libc.setns(ns, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), f"setns into {self.netns}")
                finally:
                    os.close(ns)
                out["fd"] = open_tap(name)
            except BaseException as exc:
                out["error"] = exc

        thread = threading.Thread(target=enter_and_open, name=f"tap-{self.name}")
        thread.start()
        thread.join()
        if "error" in out:
            raise out["error"]
        fd: int = out["fd"]
        return fd


def sh(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


@dataclasses.dataclass
class Cloud:
    central: ovn_fixture.OvnSandbox
    hv1: Hypervisor
    hv2: Hypervisor

    @property
    def hosts(self) -> tuple[Hypervisor, Hypervisor]:
        return self.hv1, self.hv2

    def diagnostics(self) -> str:
        parts = [self.central.diagnostics()]
        for hv in self.hosts:
            if hv.controller is not None:
                parts.append(f"--- {hv.name} ovn-controller.log ---\n{hv.controller.tail()}")
            if hv.daemon is not None:
                parts.append(f"--- {hv.name} vifplugd ---\n{hv.daemon.stderr()[-3000:]}")
        return "\n".join(parts)

    def wait(self, what: str, probe: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
        try:
            return ovn_fixture.wait_for(what, probe, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.diagnostics()}") from None

    def binding(self, lport: str) -> dict[str, Any]:
        """The Port_Binding's chassis and additional chassis, by name, and its options."""
        rows = self.central.sb_find(
            "Port_Binding",
            f"logical_port={lport}",
            columns="chassis,additional_chassis,requested_chassis,options,up",
        )
        assert rows, f"no Port_Binding for {lport}"
        row = rows[0]
        names = self.chassis_names()

        def refs(value: list[Any]) -> list[str]:
            if value[0] == "uuid":
                return [names.get(value[1], value[1])]
            return sorted(names.get(v[1], v[1]) for v in value[1])

        return {
            "chassis": refs(row["chassis"]),
            "additional_chassis": refs(row["additional_chassis"]),
            "options": dict(row["options"][1]),
            "up": row["up"] if isinstance(row["up"], bool) else None,
        }

    def chassis_names(self) -> dict[str, str]:
        return {
            r["_uuid"][1]: r["name"] for r in self.central.sb_find("Chassis", columns="_uuid,name")
        }


def _start_hypervisor(
    stack: contextlib.ExitStack, name: str, encap_ip: str, bridge: str
) -> Hypervisor:
    netns = unique("vpmig")
    sh("ip", "netns", "add", netns)
    stack.callback(subprocess.run, ["ip", "netns", "delete", netns], check=False)
    directory = tempfile.mkdtemp(prefix="vpovs-", dir="/tmp")
    stack.callback(shutil.rmtree, directory, ignore_errors=True)
    ovs = ovs_sandbox.OvsSandbox(directory, netns=netns)
    stack.callback(ovs.stop)
    ovs.start()
    sh("ip", "-n", netns, "link", "set", "lo", "up")
    return Hypervisor(name=name, netns=netns, ovs=ovs, bridge=bridge, encap_ip=encap_ip)


def _wire(hv1: Hypervisor, hv2: Hypervisor) -> None:
    """A veth between the two namespaces; on each side a br-phy bridge with the
    veth as its port and the tunnel endpoint on its internal interface."""
    ends = unique("vpva"), unique("vpvb")
    sh("ip", "link", "add", ends[0], "type", "veth", "peer", "name", ends[1])
    for hv, end in zip((hv1, hv2), ends, strict=True):
        sh("ip", "link", "set", end, "netns", hv.netns)
        phy = unique("vpphy")
        hv.ovs.vsctl(
            "add-br", phy, "--", "set", "Bridge", phy, "datapath_type=netdev",
            "--", "add-port", phy, end,
        )  # fmt: skip
        sh("ip", "-n", hv.netns, "link", "set", end, "up")
        sh("ip", "-n", hv.netns, "addr", "add", f"{hv.encap_ip}/24", "dev", phy)
        sh("ip", "-n", hv.netns, "link", "set", phy, "up")


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    """OVN central, two hypervisors wired by a veth, each with its
    ovn-controller and its vifplugd; everything stopped by pid afterwards."""
    pids: list[int] = []
    with contextlib.ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="vpd-", dir="/tmp"))
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        central = ovn_fixture.OvnSandbox(None, bridge="")
        stack.callback(central.stop)
        central.start()
        # One integration bridge name on both, as on a real cloud: the VIF
        # names it, and the same VIF is plugged on both hosts.
        bridge = unique("vpint")
        hv1 = _start_hypervisor(stack, "hv1", SUBNET % 1, bridge)
        hv2 = _start_hypervisor(stack, "hv2", SUBNET % 2, bridge)
        _wire(hv1, hv2)
        for hv in (hv1, hv2):
            hv.controller = ovn_fixture.Controller(
                central, hv.ovs, bridge=hv.bridge, system_id=hv.name, encap_ip=hv.encap_ip
            )
            stack.callback(hv.controller.stop)
            hv.controller.start(timeout=TIMEOUT)
        for hv in (hv1, hv2):
            sub = workdir / hv.name
            config = merge(
                base_config(sub, hv.ovs.remote, bridge=hv.bridge),
                {"DEFAULT": {"system_id": hv.name}, "api": {"default_timeout": TIMEOUT}},
            )
            hv.daemon = start_daemon(sub, config, wrap=("ip", "netns", "exec", hv.netns))
            stack.callback(hv.daemon.stop)
        central.nbctl("--wait=hv", "sync")
        pids = [*hv1.pids(), *hv2.pids()]
        yield Cloud(central=central, hv1=hv1, hv2=hv2)
    # conftest's leak check only sees our own namespace: check the others here.
    left = [p for p in pids if ovn_fixture.running(p)]
    assert not left, f"processes of the hypervisors still running: {left}"


# -- frames --------------------------------------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def icmp_echo(src: tuple[str, str], dst: tuple[str, str], marker: bytes) -> bytes:
    """An ICMP echo request from (mac, ip) ``src`` to ``dst`` carrying ``marker``."""
    icmp = struct.pack("!BBHHH", 8, 0, 0, 0x7650, 1) + marker
    icmp = icmp[:2] + struct.pack("!H", _checksum(icmp)) + icmp[4:]
    ips = [bytes(int(x) for x in ip.split(".")) for ip in (src[1], dst[1])]
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0, 0x4000, 64, 1, 0, *ips)
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return Frame(
        dst=mac_bytes(dst[0]), src=mac_bytes(src[0]), ethertype=0x0800, payload=header + icmp
    ).pack()


def rarp(address: str) -> bytes:
    """The RARP QEMU broadcasts from a migrated guest's NIC (qemu_announce_self):
    reverse request, sender and target hardware address its own MAC."""
    hw = mac_bytes(address)
    payload = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 3, hw, bytes(4), hw, bytes(4))
    return Frame(dst=b"\xff" * 6, src=hw, ethertype=0x8035, payload=payload.ljust(46, b"\0")).pack()


def delivered(fd_from: int, frame: bytes, fd_to: int, marker: bytes, timeout: float) -> bool:
    """Write ``frame`` into one tap until ``marker`` comes out of the other
    (a first frame may be spent on ARP for the tunnel endpoint)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        os.write(fd_from, frame)
        ready, _, _ = select.select([fd_to], [], [], 0.5)
        while ready:
            if marker in os.read(fd_to, 65536):
                return True
            ready, _, _ = select.select([fd_to], [], [], 0.05)
    return False


def drain(fd: int) -> None:
    while select.select([fd], [], [], 0)[0]:
        os.read(fd, 65536)


# -- the test ------------------------------------------------------------------------------


@dataclasses.dataclass
class Vm:
    vif: dict[str, Any]
    instance: dict[str, Any]
    address: str
    ip: str

    @property
    def vif_id(self) -> str:
        return str(prim.data(self.vif)["id"])

    @property
    def tap(self) -> str:
        return str(prim.data(self.vif)["vif_name"])


def plug(hv: Hypervisor, vm: Vm) -> dict[str, Any]:
    with hv.client() as c:
        r = c.post(
            "/v1/vifs",
            params={"wait": "ovn-installed", "timeout": str(TIMEOUT)},
            json=prim.body(vm.vif, vm.instance),
        )
    assert r.status_code == 201, f"{hv.name}: {r.status_code} {r.text}"
    answer: dict[str, Any] = r.json()
    return answer


def unplug(hv: Hypervisor, vm: Vm) -> None:
    with hv.client() as c:
        r = c.delete(f"/v1/vifs/{vm.vif_id}")
    assert r.status_code == 204, f"{hv.name}: {r.status_code} {r.text}"


class Journal:
    """What each step left in OVSDB and the SB: printed at the end (the worked
    example of docs/integration-guide.md is taken from it) and checked for
    the invariant of every step: at most one active interface per iface-id
    on each host."""

    def __init__(self, cloud: Cloud, vm: Vm) -> None:
        self.cloud, self.vm = cloud, vm
        self.lines: list[str] = []

    def step(self, title: str) -> dict[str, list[dict[str, Any]]]:
        seen = {hv.name: hv.interfaces(self.vm.vif_id) for hv in self.cloud.hosts}
        binding = self.cloud.binding(self.vm.vif_id)
        self.lines.append(f"== {title}")
        for hv in self.cloud.hosts:
            host, rows = hv.name, seen[hv.name]
            active = [r for r in rows if r["external_ids"].get("iface-status") == "active"]
            assert len(active) <= 1, f"{title}: {host} has {len(active)} active: {rows}"
            # vifplugd says the same as OVSDB.
            listed = hv.vifs().get(self.vm.vif_id)
            assert listed == (rows[0]["external_ids"]["iface-status"] if rows else None)
            for r in rows:
                ids = json.dumps(r["external_ids"], sort_keys=True)
                self.lines.append(f"  {host} Interface {r['name']} ofport={r['ofport']} {ids}")
            if not rows:
                self.lines.append(f"  {host} (no interface)")
        self.lines.append(
            f"  SB Port_Binding chassis={binding['chassis']} "
            f"additional_chassis={binding['additional_chassis']} up={binding['up']} "
            f"options={json.dumps(binding['options'], sort_keys=True)}"
        )
        return seen


def test_live_migration_between_two_hypervisors(cloud: Cloud) -> None:
    central, hv1 = cloud.central, cloud.hv1
    switch = unique("lsmig")
    central.nbctl("ls-add", switch)
    vms = []
    for n in (10, 11):
        address = mac()
        vif = prim.vif_ovs(bridge=hv1.bridge, mac=address)
        vm = Vm(vif=vif, instance=prim.instance(name=f"vm{n}"), address=address, ip=f"10.7.0.{n}")
        central.nbctl(
            "lsp-add", switch, vm.vif_id,
            "--", "lsp-set-addresses", vm.vif_id, f"{address} {vm.ip}",
            "--", "lsp-set-options", vm.vif_id, "requested-chassis=hv1",
        )  # fmt: skip
        vms.append(vm)
    vm, peer = vms  # vm migrates; peer stays on hv1
    journal = Journal(cloud, vm)
    fds: list[int] = []
    try:
        _migrate(cloud, journal, vm, peer, fds)
    finally:
        print("\n".join(journal.lines))
        for fd in fds:
            os.close(fd)
        central.nbctl("--if-exists", "ls-del", switch)


def _migrate(cloud: Cloud, journal: Journal, vm: Vm, peer: Vm, fds: list[int]) -> None:
    central, hv1, hv2 = cloud.central, cloud.hv1, cloud.hv2
    lport = vm.vif_id

    # 1. The VM and its peer run on hv1.
    plug(hv1, vm)
    plug(hv1, peer)
    fd_vm1, fd_peer = hv1.open_tap(vm.tap), hv1.open_tap(peer.tap)
    fds += [fd_vm1, fd_peer]
    journal.step("1. plugged on hv1 (wait=ovn-installed)")
    assert cloud.binding(lport)["chassis"] == ["hv1"]
    marker = b"vifplug-before-" + uuid.uuid4().bytes
    frame = icmp_echo((vm.address, vm.ip), (peer.address, peer.ip), marker)
    assert delivered(fd_vm1, frame, fd_peer, marker, TIMEOUT), "vm -> peer on hv1"

    # 2. The network manager binds the port to both chassis, hv2 to be
    # activated by the VM's RARP.
    central.nbctl(
        "--wait=sb", "lsp-set-options", lport,
        "requested-chassis=hv1,hv2", "activation-strategy=rarp",
    )  # fmt: skip
    journal.step("2. requested-chassis=hv1,hv2 activation-strategy=rarp")

    # 3. pre_live_migration: the destination plugs the same VIF (same id, tap
    # name, MAC, instance) and is answered once hv2's ovn-controller installed
    # it as an additional chassis.
    answer = plug(hv2, vm)
    installed = journal.step("3. plugged on hv2 (wait=ovn-installed)")
    (dest,) = installed["hv2"]
    assert dest["external_ids"]["ovn-installed"] == "true"
    assert dest["external_ids"]["iface-status"] == "active"
    assert answer["ofport"] == dest["ofport"]
    binding = cloud.binding(lport)
    assert binding["chassis"] == ["hv1"] and binding["additional_chassis"] == ["hv2"]
    assert hv2.controller is not None
    assert dest["ofport"] in hv2.controller.classified_in_ports()
    (src,) = installed["hv1"]
    assert src["external_ids"]["iface-status"] == "active"

    # 4. The guest runs on hv2 now: QEMU announces it with a RARP, which
    # activates the additional chassis.
    fd_vm2 = hv2.open_tap(vm.tap)
    fds.append(fd_vm2)
    announce = rarp(vm.address)

    def activated() -> bool:
        os.write(fd_vm2, announce)
        opts = cloud.binding(lport)["options"]
        return opts.get("additional-chassis-activated") == "hv2"

    cloud.wait("the RARP to activate hv2", activated)
    journal.step("4. RARP from hv2's tap")

    # 5. post_live_migration: the port is bound to hv2 alone, hv1 unplugs.
    central.nbctl(
        "--wait=sb", "remove", "Logical_Switch_Port", lport,
        "options", "activation-strategy", "--",
        "lsp-set-options", lport, "requested-chassis=hv2",
    )  # fmt: skip
    cloud.wait(
        "the Port_Binding to move to hv2",
        lambda: (
            cloud.binding(lport)["chassis"] == ["hv2"]
            and not cloud.binding(lport)["additional_chassis"]
        ),
    )
    journal.step("5. requested-chassis=hv2")
    unplug(hv1, vm)
    os.close(fd_vm1)
    fds.remove(fd_vm1)
    journal.step("6. unplugged on hv1")
    binding = cloud.binding(lport)
    assert binding["chassis"] == ["hv2"] and binding["additional_chassis"] == []
    assert hv1.interfaces(lport) == []
    (dest,) = hv2.interfaces(lport)
    assert dest["external_ids"]["ovn-installed"] == "true"
    assert dest["external_ids"]["iface-status"] == "active"

    # Frames between the VM (now on hv2) and its peer (hv1) cross the tunnel,
    # both ways: the two taps are in different namespaces joined only by the
    # veth, which is a port of br-phy, not of the integration bridge.
    assert hv1.encap_ip in hv2.tunnels().values() and hv2.encap_ip in hv1.tunnels().values()
    drain(fd_peer)
    drain(fd_vm2)
    marker = b"vifplug-after-" + uuid.uuid4().bytes
    frame = icmp_echo((vm.address, vm.ip), (peer.address, peer.ip), marker)
    assert delivered(fd_vm2, frame, fd_peer, marker, TIMEOUT), "vm on hv2 -> peer on hv1"
    marker = b"vifplug-back-" + uuid.uuid4().bytes
    frame = icmp_echo((peer.address, peer.ip), (vm.address, vm.ip), marker)
    assert delivered(fd_peer, frame, fd_vm2, marker, TIMEOUT), "peer on hv1 -> vm on hv2"
