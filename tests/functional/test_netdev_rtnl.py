"""``rtnl.set_link`` and ``rtnl.link_group``: one message each on pyroute2's
plain socket, with the kernel's errors raised and stale answers skipped."""

from __future__ import annotations

import errno
import socket
import subprocess
from typing import Any

import pytest
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from test_netdev_support import Devices, ip_link

from vifplug import exceptions, netdev
from vifplug.netdev import rtnl


def new_tap(dev: Devices) -> tuple[str, int]:
    name = dev.name("t")
    netdev.ensure_tap(netdev.TapSpec(name=name, link_group=dev.link_group))
    return name, socket.if_nametoindex(name)


def test_set_link_changes_what_it_names_and_link_group_reads_it(dev: Devices) -> None:
    name, index = new_tap(dev)
    rtnl.set_link(index, group=dev.delete_group, mtu=1280, address="02:00:5e:10:20:30")
    shown = ip_link(name)
    assert shown["group"] == str(dev.delete_group)
    assert (shown["mtu"], shown["address"]) == (1280, "02:00:5e:10:20:30")
    assert rtnl.link_group(index) == dev.delete_group
    rtnl.set_link(index, group=dev.link_group)
    assert rtnl.link_group(index) == dev.link_group
    assert ip_link(name)["mtu"] == 1280  # what was not named stays


def test_set_link_sets_up_only_when_asked(dev: Devices) -> None:
    name, index = new_tap(dev)
    subprocess.run(["ip", "link", "set", "dev", name, "down"], check=True)
    rtnl.set_link(index, mtu=1300)
    assert "UP" not in ip_link(name)["flags"]
    rtnl.set_link(index, up=True, mtu=1310)
    assert "UP" in ip_link(name)["flags"]
    rtnl.set_link(index, group=dev.link_group)  # and not down again
    assert "UP" in ip_link(name)["flags"]


def test_the_kernels_refusal_is_raised_and_translated(dev: Devices) -> None:
    name, index = new_tap(dev)
    netdev.delete_links([name], delete_group=dev.delete_group)
    with pytest.raises(NetlinkError) as raised:
        rtnl.link_group(index)
    assert raised.value.code == errno.ENODEV
    with pytest.raises(exceptions.NetdevError) as translated:
        with rtnl.kernel_call("move", name):
            rtnl.set_link(index, group=dev.delete_group)
    assert rtnl.caused_by(translated.value, errno.ENODEV)


def test_an_answer_left_unread_is_skipped(dev: Devices, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request given up on (an exception between sending and reading) leaves
    its answer in the socket; the next request reads past it to its own."""
    _, first = new_tap(dev)
    _, second = new_tap(dev)
    rtnl.set_link(second, group=dev.delete_group)
    sock = rtnl._raw()
    put = sock.put
    stale: list[int] = []

    def abandoned_then_this(msg: ifinfmsg, msg_type: int, **kw: Any) -> Any:
        if not stale:  # a request for the other device, whose answer nobody reads
            other = ifinfmsg()
            other["index"] = first
            stale.append(put(other, msg_type, msg_flags=kw["msg_flags"], msg_seq=kw["msg_seq"] - 1))
        return put(msg, msg_type, **kw)

    monkeypatch.setattr(sock, "put", abandoned_then_this)
    assert rtnl.link_group(second) == dev.delete_group
    assert stale
    monkeypatch.undo()
    assert rtnl.link_group(first) == dev.link_group


@pytest.fixture
def fresh_socket(monkeypatch: pytest.MonkeyPatch) -> Any:
    """This thread's socket made anew after the test's changes, and again after it."""
    rtnl.close_thread_socket()
    yield monkeypatch
    monkeypatch.undo()
    rtnl.close_thread_socket()


def test_an_answer_that_never_comes_times_out(dev: Devices, fresh_socket: Any) -> None:
    """The kernel answers nothing to a message without NLM_F_REQUEST: the
    read gives up after ANSWER_TIMEOUT instead of blocking the thread."""
    _, index = new_tap(dev)
    fresh_socket.setattr(rtnl, "ANSWER_TIMEOUT", 0.2)
    msg = ifinfmsg()
    msg["index"] = index
    with pytest.raises(TimeoutError):
        rtnl._exchange(rtnl.RTM_GETLINK, msg, 0)
    assert rtnl.link_group(index) == dev.link_group  # the socket still serves


def test_an_answer_cut_short_is_refused(dev: Devices, fresh_socket: Any) -> None:
    """An answer longer than the read is an error, never part of a message."""
    name, index = new_tap(dev)
    fresh_socket.setattr(rtnl, "ANSWER_BUFSIZE", 64)
    with pytest.raises(exceptions.NetdevError) as raised:
        with rtnl.kernel_call("check", name):
            rtnl.link_group(index)
    assert rtnl.caused_by(raised.value, errno.EMSGSIZE)
    fresh_socket.undo()
    assert rtnl.link_group(index) == dev.link_group
