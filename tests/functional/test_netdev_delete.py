"""Batch deletion through a delete group, and the Deleter that coalesces it."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import subprocess
import threading
import time

import pytest
from daemon_fixture import ASIDE
from engine_fixture import open_tap
from pyroute2.netlink.exceptions import NetlinkError
from test_netdev_support import Devices, in_threads, ip_link

from vifplug import conf, exceptions, netdev
from vifplug.netdev import delete, owned, rtnl

CLONE_NEWNET = 0x40000000


def make_taps(dev: Devices, count: int, group: int | None = None) -> list[str]:
    names = [dev.name("t") for _ in range(count)]
    for name in names:
        netdev.ensure_tap(netdev.TapSpec(name=name, link_group=group or dev.link_group))
    return names


def existing(names: list[str]) -> list[str]:
    """Which of ``names`` exist, as ``ip -j link`` lists them (not through
    vifplug's netdev code)."""
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True)
    present = {entry["ifname"] for entry in json.loads(out.stdout)}
    return [name for name in names if name in present]


def test_200_taps_go_in_one_group_delete(dev: Devices, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.perf_counter()
    names = make_taps(dev, 200)
    created = time.perf_counter() - started

    started = time.perf_counter()
    result = delete.delete_batch(names, delete_group=dev.delete_group)
    batch = time.perf_counter() - started

    assert result.group_delete_calls == 1
    assert result.deleted == names and not result.failed and not result.missing
    assert existing(names) == []

    # For comparison: the same devices deleted one kernel call each.
    few = make_taps(dev, 20)
    started = time.perf_counter()
    for name in few:
        netdev.rtnl.ipr().link("del", ifname=name)
    each = (time.perf_counter() - started) / len(few)
    with capsys.disabled():
        print(
            f"\nnetdev: created 200 taps in {created * 1000:.0f} ms; deleted them in one "
            f"group delete in {batch * 1000:.0f} ms; one by one costs {each * 1000:.1f} ms "
            f"per tap ({each * 200 * 1000:.0f} ms for 200)"
        )


def test_missing_devices_are_ignored(dev: Devices) -> None:
    names = make_taps(dev, 3)
    ghost = dev.name("t")

    assert netdev.delete_links([*names, ghost], delete_group=dev.delete_group) == names
    assert netdev.delete_links([*names, ghost], delete_group=dev.delete_group) == []
    assert netdev.delete_links([], delete_group=dev.delete_group) == []


def test_only_the_named_devices_are_deleted(dev: Devices) -> None:
    doomed = make_taps(dev, 5)
    same_group = make_taps(dev, 2)
    bystander = make_taps(dev, 1, group=dev.link_group + 1)

    netdev.delete_links(doomed, delete_group=dev.delete_group)

    assert existing(doomed) == []
    assert existing(same_group + bystander) == same_group + bystander
    assert ip_link(bystander[0])["group"] == str(dev.link_group + 1)  # type: ignore[index]
    netdev.delete_links(bystander, delete_group=dev.delete_group)


def test_both_ends_of_a_veth_go_with_either_name(dev: Devices) -> None:
    spec = netdev.VethSpec(name=dev.name("v"), peer=dev.name("v"), link_group=dev.link_group)
    netdev.ensure_veth(spec)

    assert netdev.delete_links([spec.name, spec.peer], delete_group=dev.delete_group) == [
        spec.name,
        spec.peer,
    ]
    assert existing([spec.name, spec.peer]) == []


def test_an_undeletable_device_does_not_fail_the_others(dev: Devices) -> None:
    names = make_taps(dev, 3)
    # lo has no rtnl link ops: the kernel refuses the whole group delete.
    with pytest.raises(exceptions.NetdevError) as caught:
        netdev.delete_links([names[0], "lo", *names[1:]], delete_group=dev.delete_group)

    assert caught.value.context["device"] == "lo"
    assert existing(names) == []
    lo = netdev.get_link("lo")
    assert lo is not None and lo.group == 0  # moved back out of the delete group


@pytest.mark.parametrize("group", [0, -1, 2**32])
def test_unusable_delete_groups_are_refused(group: int) -> None:
    with pytest.raises(ValueError, match="delete group"):
        netdev.delete_links(["lo"], delete_group=group)
    with pytest.raises(ValueError, match="delete group"):
        netdev.Deleter(delete_group=group)


def test_delete_group_must_differ_from_link_group() -> None:
    settings = conf.NetdevSettings(link_group=100, delete_group=100)
    with pytest.raises(ValueError, match="differ"):
        netdev.Deleter.from_settings(settings)


def test_deleter_coalesces_concurrent_requests(
    dev: Devices, capsys: pytest.CaptureFixture[str]
) -> None:
    per_thread = [make_taps(dev, 4) for _ in range(50)]
    bystander = make_taps(dev, 1)

    with netdev.Deleter(delete_group=dev.delete_group) as deleter:
        started = time.perf_counter()
        results = in_threads(50, lambda i: deleter.delete(per_thread[i]).deleted)
        took = time.perf_counter() - started
        calls, batches = deleter.group_delete_calls, deleter.batches

    assert results == per_thread
    assert existing([name for names in per_thread for name in names]) == []
    assert existing(bystander) == bystander
    assert 1 <= calls < 50
    assert calls == batches
    with capsys.disabled():
        print(
            f"\nnetdev: 50 threads x 4 taps deleted in {took * 1000:.0f} ms "
            f"with {calls} group deletes"
        )


def test_deleter_reports_each_request_its_own_errors(dev: Devices) -> None:
    good = make_taps(dev, 2)
    with netdev.Deleter(delete_group=dev.delete_group) as deleter:

        def work(i: int) -> str:
            try:
                return repr(deleter.delete(["lo"] if i == 0 else [good[i - 1]]).deleted)
            except exceptions.NetdevError as err:
                return f"error on {err.context['device']}"

        results = in_threads(3, work)

    assert results[0] == "error on lo"
    assert results[1:] == [repr([good[0]]), repr([good[1]])]
    assert existing(good) == []
    assert ip_link("lo")["group"] == "default"  # type: ignore[index]


def test_deleter_close_drains_and_then_refuses(dev: Devices) -> None:
    names = make_taps(dev, 2)
    deleter = netdev.Deleter(delete_group=dev.delete_group)
    assert deleter.delete(names) == netdev.Deletion(deleted=names)
    deleter.close()
    deleter.close()  # idempotent

    with pytest.raises(exceptions.ShuttingDown):
        deleter.delete(make_taps(dev, 1))
    with pytest.raises(exceptions.InvalidDeviceName):
        deleter.delete(["bad/name"])


# --- only our own devices ---------------------------------------------------------


def kernel_groups() -> dict[str, int]:
    """Every device and its link group, read with ``ip -j -d link`` (not through netdev)."""
    out = subprocess.run(
        ["ip", "-j", "-d", "link", "show"], capture_output=True, text=True, check=True
    ).stdout
    return {
        link["ifname"]: 0 if link.get("group", "default") == "default" else int(link["group"])
        for link in json.loads(out)
    }


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.mark.parametrize("aside", [False, True])
def test_a_deleter_with_a_link_group_leaves_other_devices_alone(dev: Devices, aside: bool) -> None:
    ours = make_taps(dev, 2)
    foreign_tap, foreign_veth, peer, ghost = (dev.name("f") for _ in range(4))
    # Made as an operator or another tool would: ip(8), default group 0.
    ip("tuntap", "add", "dev", foreign_tap, "mode", "tap")
    ip("link", "add", foreign_veth, "type", "veth", "peer", "name", peer)
    # A device of ours left in the delete group by an interrupted batch is ours.
    crashed = make_taps(dev, 1, group=dev.delete_group)

    with netdev.Deleter(
        delete_group=dev.delete_group, link_group=dev.link_group, aside=aside
    ) as deleter:
        done = deleter.delete([*ours, foreign_tap, foreign_veth, ghost, *crashed])

    if aside:  # the crashed one went as the deleter was made
        assert done.deleted == ours
    else:
        assert done.deleted == [*ours, *crashed]
    assert set(done.left_alone) == {foreign_tap, foreign_veth}
    assert "not made by vifplug (link group 0" in done.left_alone[foreign_tap]
    groups = kernel_groups()
    assert not {*ours, *crashed} & set(groups)
    assert groups[foreign_tap] == 0 and groups[foreign_veth] == 0 and groups[peer] == 0


def test_the_daemons_deleter_checks_its_link_group(dev: Devices) -> None:
    settings = conf.NetdevSettings(link_group=dev.link_group, delete_group=dev.delete_group)
    foreign = dev.name("f")
    ip("tuntap", "add", "dev", foreign, "mode", "tap")
    with netdev.Deleter.from_settings(settings) as deleter:
        done = deleter.delete([foreign])
    assert done.deleted == [] and list(done.left_alone) == [foreign]
    assert kernel_groups()[foreign] == 0


# --- put aside, deleted in the background -------------------------------------------


def indices(names: list[str]) -> list[int]:
    found = []
    for name in names:
        link = ip_link(name)
        assert link is not None
        found.append(int(link["ifindex"]))
    return found


def test_taps_put_aside_are_answered_before_they_are_deleted(dev: Devices) -> None:
    taps = make_taps(dev, 3)
    before = indices(taps)
    deleter = netdev.Deleter(delete_group=dev.delete_group, link_group=dev.link_group, aside=True)
    try:
        with delete._lock_for(dev.delete_group):  # the reaper cannot delete meanwhile
            assert deleter.delete(taps) == netdev.Deletion(deleted=taps)
            assert existing(taps) == []
            groups = kernel_groups()
            aside = [delete.aside_name(index) for index in before]
            assert all(groups[name] == dev.delete_group for name in aside)
            # The name is free for the next plug at once.
            netdev.ensure_tap(netdev.TapSpec(name=taps[0], link_group=dev.link_group))
    finally:
        deleter.close()
    assert not set(aside) & set(kernel_groups())
    assert existing(taps) == [taps[0]]
    assert deleter.group_delete_calls >= 1


def bridge_ports(bridge: str) -> list[str]:
    out = subprocess.run(
        ["ip", "-j", "link", "show", "master", bridge], capture_output=True, text=True, check=True
    ).stdout
    return [entry["ifname"] for entry in json.loads(out or "[]")]


def test_a_tap_put_aside_stays_in_its_bridge_until_it_is_deleted(dev: Devices) -> None:
    (tap,) = make_taps(dev, 1)
    (index,) = indices([tap])
    bridge = dev.name("b")
    ip("link", "add", bridge, "type", "bridge")
    ip("link", "set", bridge, "group", str(dev.link_group))
    ip("link", "set", tap, "master", bridge)
    assert bridge_ports(bridge) == [tap]
    with netdev.Deleter(
        delete_group=dev.delete_group, link_group=dev.link_group, aside=True
    ) as deleter:
        with delete._lock_for(dev.delete_group):
            assert deleter.delete([tap]).deleted == [tap]
            assert bridge_ports(bridge) == [delete.aside_name(index)]
        deleter.flush()
        assert bridge_ports(bridge) == []
        assert existing([bridge]) == [bridge]
        deleter.delete([bridge])


def test_a_veth_is_deleted_before_the_answer_even_aside(dev: Devices) -> None:
    spec = netdev.VethSpec(name=dev.name("v"), peer=dev.name("p"), link_group=dev.link_group)
    netdev.ensure_veth(spec)
    tap = make_taps(dev, 1)
    with netdev.Deleter(
        delete_group=dev.delete_group, link_group=dev.link_group, aside=True
    ) as deleter:
        with delete._lock_for(dev.delete_group):
            taken = threading.Thread(target=deleter.delete, args=([*tap, spec.name],))
            taken.start()
            taken.join(0.5)
            assert taken.is_alive()  # the veth waits for the group delete
            assert existing([spec.name, spec.peer]) == [spec.name, spec.peer]
            assert existing(tap) == []  # the tap did not wait: renamed aside
        taken.join(10)
        assert existing([spec.name, spec.peer]) == []


def test_what_a_crash_left_aside_is_deleted_before_the_deleter_serves(dev: Devices) -> None:
    left = make_taps(dev, 2, group=dev.delete_group)
    with netdev.Deleter(delete_group=dev.delete_group, link_group=dev.link_group, aside=True):
        assert existing(left) == []


def test_a_kernel_refusing_to_rename_a_device_up_turns_aside_off(
    dev: Devices, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = rtnl.set_link
    refused: list[int] = []

    def set_link(index: int, *, up: bool = False, **attrs: object) -> None:
        if "ifname" in attrs:  # as Linux before 6.2 answers for a device that is up
            refused.append(index)
            raise NetlinkError(errno.EBUSY)
        real(index, up=up, **attrs)

    monkeypatch.setattr(rtnl, "set_link", set_link)
    first, second = make_taps(dev, 1), make_taps(dev, 1)
    with netdev.Deleter(
        delete_group=dev.delete_group, link_group=dev.link_group, aside=True
    ) as deleter:
        assert deleter.delete(first).deleted == first
        assert existing(first) == []
        assert deleter.delete(second).deleted == second
    assert len(refused) == 1  # the second one was not even tried
    assert existing(second) == []


def test_flush_deletes_what_is_aside_without_waiting_for_the_interval(
    dev: Devices, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delete, "REAP_INTERVAL", 3600.0)
    first, second = make_taps(dev, 1), make_taps(dev, 1)
    aside = [delete.aside_name(index) for index in indices([*first, *second])]
    with netdev.Deleter(
        delete_group=dev.delete_group, link_group=dev.link_group, aside=True
    ) as deleter:
        deleter.delete(first)
        deleter.flush()
        assert aside[0] not in kernel_groups()
        deleter.delete(second)  # the next delete is an hour away, but for flush
        deleter.flush()
        assert not set(aside) & set(kernel_groups())


def test_aside_names_fit_a_device_name_and_the_fixtures_pattern() -> None:
    for index in (1, 0x5E, 2**31 - 1):
        name = delete.aside_name(index)
        assert len(name) <= 15 and ASIDE.fullmatch(name)
        netdev.validate_name(name)


def test_a_rename_the_kernel_applied_before_refusing_counts_as_aside(
    dev: Devices, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = rtnl.set_link

    def set_link(index: int, *, up: bool = False, **attrs: object) -> None:
        real(index, up=up, **attrs)
        if "ifname" in attrs:  # as for a datapath port asked to leave its master
            raise NetlinkError(errno.EOPNOTSUPP)

    monkeypatch.setattr(rtnl, "set_link", set_link)
    taps = make_taps(dev, 1)
    aside = [delete.aside_name(index) for index in indices(taps)]
    with netdev.Deleter(
        delete_group=dev.delete_group, link_group=dev.link_group, aside=True
    ) as deleter:
        assert deleter.delete(taps).deleted == taps
        deleter.flush()
    assert not set(aside) & set(kernel_groups())


def test_the_reaper_outlives_a_failing_delete(
    dev: Devices, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Broken:
        def link(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("no netlink today")

    taps = make_taps(dev, 1)
    aside = [delete.aside_name(index) for index in indices(taps)]
    real = rtnl.ipr
    monkeypatch.setattr(rtnl, "ipr", Broken)
    deleter = netdev.Deleter(delete_group=dev.delete_group, link_group=dev.link_group, aside=True)
    try:
        assert deleter.delete(taps).deleted == taps
        deleter.flush()  # returns although the delete failed
        assert set(aside) <= set(kernel_groups())
        monkeypatch.setattr(rtnl, "ipr", real)
        deleter.flush()  # the same thread deletes them now
        assert not set(aside) & set(kernel_groups())
    finally:
        deleter.close()


# --- the taps this process made are known by their index -----------------------------


def record_lookups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every ``RTM_GETLINK`` the deleter makes to check a device, by index."""
    asked: list[int] = []
    real = rtnl.group_and_kind

    def group_and_kind(index: int) -> tuple[int, str | None]:
        asked.append(index)
        return real(index)

    monkeypatch.setattr(rtnl, "group_and_kind", group_and_kind)
    return asked


@pytest.mark.parametrize("aside", [False, True])
def test_a_tap_this_process_made_is_deleted_without_asking_the_kernel(
    dev: Devices, monkeypatch: pytest.MonkeyPatch, aside: bool
) -> None:
    ours = make_taps(dev, 3)
    foreign = dev.name("f")
    ip("tuntap", "add", "dev", foreign, "mode", "tap")
    (foreign_index,) = indices([foreign])
    asked = record_lookups(monkeypatch)
    with netdev.Deleter(
        delete_group=dev.delete_group, link_group=dev.link_group, aside=aside
    ) as deleter:
        done = deleter.delete([*ours, foreign])
    assert done.deleted == ours and list(done.left_alone) == [foreign]
    assert set(asked) == {foreign_index}  # only the device this process did not make
    assert existing([*ours, foreign]) == [foreign]


def test_a_device_that_cannot_go_aside_is_looked_up_once(
    dev: Devices, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A veth named alone, and a foreign tap: the look-up made to decide
    whether they go aside also decides, in the batch delete, whether they are
    ours (one ``RTM_GETLINK`` each, not two)."""
    spec = netdev.VethSpec(name=dev.name("v"), peer=dev.name("p"), link_group=dev.link_group)
    netdev.ensure_veth(spec)
    foreign = dev.name("f")
    ip("tuntap", "add", "dev", foreign, "mode", "tap")
    looked_at = indices([spec.name, foreign])
    asked = record_lookups(monkeypatch)
    with netdev.Deleter(
        delete_group=dev.delete_group, link_group=dev.link_group, aside=True
    ) as deleter:
        done = deleter.delete([spec.name, foreign])
    assert done.deleted == [spec.name] and list(done.left_alone) == [foreign]
    assert sorted(asked) == sorted(looked_at)
    assert existing([spec.name, spec.peer, foreign]) == [foreign]


@pytest.mark.parametrize("aside", [False, True])
def test_a_device_that_took_our_taps_name_behind_our_back_is_left_alone(
    dev: Devices, aside: bool
) -> None:
    (name,) = make_taps(dev, 1)
    ip("link", "del", name)  # as an operator would, vifplug not told
    ip("tuntap", "add", "dev", name, "mode", "tap")
    with netdev.Deleter(
        delete_group=dev.delete_group, link_group=dev.link_group, aside=aside
    ) as deleter:
        done = deleter.delete([name])
    assert done.deleted == [] and "not made by vifplug" in done.left_alone[name]
    assert kernel_groups()[name] == 0
    ip("link", "del", name)


def test_a_tap_is_known_only_in_the_namespace_it_was_made_in(dev: Devices) -> None:
    (name,) = make_taps(dev, 1)
    (index,) = indices([name])
    libc = ctypes.CDLL(None, use_errno=True)
    seen: list[object] = []

    def elsewhere() -> None:  # unshare(CLONE_NEWNET) moves this thread only
        try:
            if libc.unshare(CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "unshare")
            seen.append(rtnl.netns_cookie())
            seen.append(owned.OWNED.take(name, index))
        except Exception as err:
            seen.append(err)
        finally:
            rtnl.close_thread_socket()

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    here = rtnl.netns_cookie()
    assert here is not None and len(seen) == 2, seen
    assert seen[0] not in (None, here)  # another namespace, another cookie
    assert seen[1] is None
    assert owned.OWNED.take(name, index) == dev.link_group
    assert owned.OWNED.take(name, index) is None  # taken: the next check asks the kernel


def forget(names: list[str]) -> None:
    """Drop what this process noted of ``names``, as a restarted daemon has."""
    for name in names:
        owned.OWNED.discard(name)


@pytest.mark.parametrize("aside", [False, True])
def test_taps_a_listing_found_in_our_group_are_deleted_without_asking_again(
    dev: Devices, monkeypatch: pytest.MonkeyPatch, aside: bool
) -> None:
    """After a restart the table is empty; the taps a reconciliation's dump
    found in our group are noted, and only those."""
    ours = make_taps(dev, 3)
    forget(ours)
    other_group = make_taps(dev, 1, group=dev.link_group + 1)[0]
    forget([other_group])
    making = dev.name("m")
    fd = open_tap(making)  # no such tap yet: one that lives only as long as fd
    try:
        ip("link", "set", making, "group", str(dev.link_group))
        noted = netdev.note_listed(netdev.list_links(), dev.link_group)
        assert noted >= 3  # other tests' taps in this group may be listed too
        assert owned.OWNED.take(making, indices([making])[0]) is None
        assert owned.OWNED.take(other_group, indices([other_group])[0]) is None
    finally:
        os.close(fd)
    asked = record_lookups(monkeypatch)
    with netdev.Deleter(
        delete_group=dev.delete_group, link_group=dev.link_group, aside=aside
    ) as deleter:
        done = deleter.delete(ours)
    assert done.deleted == ours and asked == []
    assert existing(ours) == []
    ip("link", "del", other_group)
