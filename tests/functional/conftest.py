"""Fixtures of the functional tests: the vifplugd subprocess (``daemon_fixture``),
devices for netdev tests, and 'physical' devices for pool networks."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
from pyroute2 import IPRoute

sys.path.insert(0, os.path.dirname(__file__))

from daemon_fixture import daemon_factory, vifplugd, workdir
from test_netdev_support import Devices

from helpers import unique

__all__ = ["daemon_factory", "dev", "nics", "vifplugd", "workdir"]


@pytest.fixture
def dev() -> Iterator[Devices]:
    """Devices a netdev test creates, all removed afterwards."""
    devices = Devices()
    try:
        yield devices
    finally:
        devices.cleanup()


@pytest.fixture
def nics() -> Iterator[list[str]]:
    """Three 'physical' devices (veth ends, up) for pools; removed afterwards."""
    names = [unique("vpn") for _ in range(3)]
    with IPRoute() as ipr:
        for n in names:
            ipr.link("add", ifname=n, kind="veth", peer=n[:-1] + "P")
            ipr.link("set", ifname=n, state="up")
    try:
        yield names
    finally:
        with IPRoute() as ipr:
            for n in names:
                if ipr.link_lookup(ifname=n):
                    ipr.link("del", ifname=n)
