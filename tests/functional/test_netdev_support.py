"""Helpers for the netdev functional tests (this module holds no tests).

The whole pytest process runs in a private network namespace (see
``tests/conftest.py``); inside it each test gets its own ``Devices``: a name
tag no other test uses and two link groups of its own.  At teardown every
device carrying the tag or sitting in one of the groups is deleted, and the
test fails if any survives, so a leak is caught where it happens.
"""

from __future__ import annotations

import functools
import json
import random
import secrets
import subprocess
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from vifplug import exceptions, netdev

T = TypeVar("T")


def ip_link(name: str) -> dict[str, Any] | None:
    """``ip -j -d link show dev NAME``: what iproute2 says of a device, a
    readout independent of vifplug's netdev code; None when it does not exist."""
    out = subprocess.run(
        ["ip", "-j", "-d", "link", "show", "dev", name], capture_output=True, text=True
    )
    if out.returncode != 0:
        assert "does not exist" in out.stderr, out.stderr
        return None
    (entry,) = json.loads(out.stdout)
    found: dict[str, Any] = entry
    return found


def ip_kind(entry: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(kind, kind-specific data) of an ``ip_link`` entry."""
    info = entry.get("linkinfo", {})
    return str(info.get("info_kind", "")), dict(info.get("info_data", {}))


class Devices:
    """Names and groups of one test, and the cleanup of what it created."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(2)
        self.link_group = random.randint(0x100000, 0x3FFFFFFF)
        self.delete_group = self.link_group + 0x40000000
        self._count = 0

    def name(self, role: str = "t") -> str:
        """A fresh device name: ``vp`` + one role letter + tag + counter (<= 15 bytes)."""
        assert len(role) == 1
        self._count += 1
        return f"vp{role}{self.tag}{self._count}"

    def mine(self, link: netdev.LinkInfo) -> bool:
        tagged = link.name.startswith("vp") and link.name[3:7] == self.tag
        return tagged or link.group in (self.link_group, self.delete_group)

    def leftovers(self) -> list[str]:
        return [link.name for link in netdev.list_links() if self.mine(link)]

    def cleanup(self) -> None:
        left = self.leftovers()
        if left:
            netdev.delete_links(left, delete_group=self.delete_group)
        still = self.leftovers()
        assert not still, f"devices survived cleanup: {still}"


def in_threads(count: int, work: Callable[[int], T]) -> list[T]:
    """Run ``work(i)`` in ``count`` threads released together; re-raise the first error."""
    barrier = threading.Barrier(count)
    results: list[T | None] = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as err:
            errors.append(err)
        finally:
            netdev.close_thread_socket()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]


@functools.cache
def police_supported() -> bool:
    """Whether this kernel has the tc police action (some test kernels do not)."""
    devices = Devices()
    name, peer = devices.name("p"), devices.name("p")
    try:
        netdev.ensure_veth(netdev.VethSpec(name=name, peer=peer, link_group=devices.link_group))
        netdev.set_bandwidth(name, ingress_kbps=1000)
    except exceptions.NetdevError as err:
        if "police" in err.message:
            return False
        raise
    finally:
        devices.cleanup()
    return True
