"""Shared fixtures: a private namespace for the run, and a real Open vSwitch.

The whole pytest process enters its own network namespace at import time (see
``nsisolate``), before any thread starts.  A session-wide sandbox OVS
(ovsdb-server + ovs-vswitchd with the userspace datapath) runs inside it;
tests make their own bridges with unique names and remove them.  Tests that
restart OVS get their own sandbox in their own named namespace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import nsisolate

ISOLATED = os.geteuid() == 0 and nsisolate.isolate()

import entry_points  # noqa: E402
import ovs_sandbox  # noqa: E402
from helpers import unique  # noqa: E402

_TREE_PLUGINS = entry_points.ensure_declared_plugins()

HAVE_OVS = shutil.which("ovs-vswitchd") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ISOLATED and HAVE_OVS:
        return
    why = "needs root in a private network namespace" if not ISOLATED else "needs openvswitch"
    for item in items:
        if "/unit/" not in str(item.fspath) and "/interop/test_osvif" not in str(item.fspath):
            item.add_marker(pytest.mark.skip(reason=why))


LEAK_MARKS = ("/tmp/vpovs-", "/tmp/vpovn-", "/tmp/vpdb-", "/tmp/vp-", "vifplug.daemon")


def _our_processes() -> dict[int, str]:
    """Processes (other than us) in our network namespace whose command line
    names a test's directory (other test runs on the machine have their own
    namespace and are not ours to judge)."""
    found = {}
    ours = os.readlink("/proc/self/ns/net")
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/net") != ours:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(mark in cmd for mark in LEAK_MARKS):
            found[int(entry)] = cmd
    return found


@pytest.fixture(scope="session", autouse=True)
def no_leaked_processes() -> Iterator[None]:
    """Fail the run if a daemon a test started outlives the session (each test
    must stop what it started, by pid); the survivors are stopped here."""
    before = set(_our_processes())
    yield
    import signal
    import time

    time.sleep(0.5)
    leaked = {pid: cmd for pid, cmd in _our_processes().items() if pid not in before}
    for pid in leaked:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    if leaked:
        raise AssertionError(
            "processes left running by the tests: "
            + "; ".join(f"{pid}: {cmd[:120]}" for pid, cmd in leaked.items())
        )


@pytest.fixture(scope="session")
def ovs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ovs_sandbox.OvsSandbox]:
    """One real Open vSwitch for the session (userspace datapath)."""
    # A short path: unix socket paths are limited to 107 bytes.
    directory = tempfile.mkdtemp(prefix="vpovs-", dir="/tmp")
    sb = ovs_sandbox.OvsSandbox(directory).start()
    try:
        yield sb
    finally:
        sb.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def bridge(ovs: ovs_sandbox.OvsSandbox) -> Iterator[str]:
    """A fresh netdev bridge in the session OVS, removed afterwards."""
    name = unique("vpbr")
    ovs.vsctl("add-br", name, "--", "set", "Bridge", name, "datapath_type=netdev")
    try:
        yield name
    finally:
        ovs.vsctl("--if-exists", "del-br", name)


@pytest.fixture
def netns_name() -> Iterator[str]:
    """A named network namespace, deleted afterwards."""
    name = unique("vpns")
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


@pytest.fixture
def private_ovs(netns_name: str) -> Iterator[ovs_sandbox.OvsSandbox]:
    """An OVS of the test's own, in its own namespace, for restart tests."""
    directory = tempfile.mkdtemp(prefix="vpovs-", dir="/tmp")
    sb = ovs_sandbox.OvsSandbox(directory, netns=netns_name).start()
    try:
        yield sb
    finally:
        sb.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp dir with a short path, for unix sockets."""
    d = tempfile.mkdtemp(prefix="vp-", dir="/tmp")
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the entry points written for this tree's plugins, if any."""
    if _TREE_PLUGINS is not None:
        shutil.rmtree(_TREE_PLUGINS, ignore_errors=True)
