"""Deleting many devices at once: one kernel call per batch, not per device.

Deleting a device makes the kernel wait for RCU grace periods; one at a time
that is about 16-19 ms per tap here, so 200 unplugs take seconds.  The kernel
deletes a whole link group with the same waits paid once: we move the named
devices into a dedicated *delete group* (one cheap ``set`` per device) and
then delete that group with one ``link del group=N`` (200 taps: ~75 ms in
all).  Unplugs arrive concurrently from many API threads, so ``Deleter``
gathers what they ask for while the previous batch runs and deletes the
next batch together.

The delete group belongs to one daemon (``[netdev] delete_group``, distinct
per daemon and from its ``link_group``); only one batch at a time fills and
deletes it (a lock per group, shared by ``delete_links`` and every
``Deleter`` in the process), so two batches never mix.  A device found in
it that no batch put there can only be left over from a batch interrupted
by a crash, and it is deleted with the next batch, as it was meant to be.
Group 0 is every device's default group and is refused.

A ``Deleter`` given the daemon's link group deletes only devices in it (or
in its delete group): a name it recorded may since have been taken by a
device someone else made (its tap removed behind its back, another made
with the same name), and that device is left alone and reported, never
deleted.  The device is checked and then moved by its ifindex, so one
replaced in between is not moved either.

With ``aside`` (the daemon's ``[netdev] delete_aside``), a tap is not
waited for at all: in one message it is renamed to ``vpdel<ifindex>`` and
moved to the delete group, and its caller is answered at once, its name
free for the next plug (it stays a port of its bridge, or of Open vSwitch's
kernel datapath, until it is deleted; its OVSDB port is gone already).  A
reaper thread deletes the delete group in the background, at most every
``REAP_INTERVAL``, so a burst of unplugs pays the kernel's fixed cost of a
group delete (15-25 ms here, whatever the size) a few times
instead of once per batch of callers.  Everything in the delete group is
then meant to go: what a crash left there is deleted as the deleter is
made, before the daemon is ready.  Other kinds are deleted before the
answer, as above: a veth, whose peer would keep its name; a bridge; a
macvtap, which holds its parent device (and a passthru macvtap needs the
parent to itself).  A kernel that refuses to rename a device that is up
(before Linux 6.2) turns the mode off for the daemon's life at the first
refusal.

The check starts from the device's index (``if_nametoindex``, one ioctl).
A tap this process made, still under its name with the index it was made
with, is ours without asking the kernel more (``owned``: 7 us instead of
0.37 ms).  Any other device is read back by its index (``RTM_GETLINK``):
pyroute2 asked by name makes a look-up of its own first, and that was a
third of the check's cost.  The check and the move go through
``rtnl.link_group`` and ``rtnl.set_link``, pyroute2's plain socket, at half
the CPU of ``IPRoute.link``.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from vifplug import conf, exceptions, threadnames
from vifplug.netdev import links, names, owned, rtnl

LOG = logging.getLogger(__name__)

_group_locks: dict[int, threading.Lock] = {}
_group_locks_guard = threading.Lock()


def _lock_for(group: int) -> threading.Lock:
    with _group_locks_guard:
        return _group_locks.setdefault(group, threading.Lock())


def check_delete_group(group: int, *, link_group: int | None = None) -> None:
    """Refuse a delete group that would take devices that are not ours."""
    if not 0 < group < 2**32:
        raise ValueError(
            f"delete group {group} is unusable: group 0 holds every device, and groups are 32-bit"
        )
    if link_group is not None and group == link_group:
        raise ValueError(f"delete group {group} must differ from the link group")


@dataclasses.dataclass
class BatchResult:
    """What one batch did: names gone, names that could not go, names left
    alone because their device is not ours (name -> why), kernel calls."""

    deleted: list[str] = dataclasses.field(default_factory=list)
    missing: list[str] = dataclasses.field(default_factory=list)
    failed: dict[str, exceptions.VifplugError] = dataclasses.field(default_factory=dict)
    left_alone: dict[str, str] = dataclasses.field(default_factory=dict)
    group_delete_calls: int = 0


@dataclasses.dataclass(frozen=True)
class Deletion:
    """What ``Deleter.delete`` did for one caller: the devices it deleted, and
    those it left alone because they are not this daemon's (name -> why)."""

    deleted: list[str] = dataclasses.field(default_factory=list)
    left_alone: dict[str, str] = dataclasses.field(default_factory=dict)


def delete_links(device_names: Iterable[str], *, delete_group: int) -> list[str]:
    """Delete the named devices with one group delete; return those that existed.

    Missing devices are ignored, so calling it again is harmless.  Blocking;
    serialized with every other batch on ``delete_group`` in this process.
    Raises ``InvalidDeviceName`` before touching anything if a name is
    unusable, and the first device's error (``NetdevError``...) if some
    device could not be deleted; the others are deleted all the same.
    """
    check_delete_group(delete_group)
    wanted = list(dict.fromkeys(device_names))
    for name in wanted:
        names.validate_name(name)
    result = delete_batch(wanted, delete_group=delete_group)
    if result.failed:
        raise next(iter(result.failed.values()))
    return result.deleted


#: Devices whose link group a caller has just read: name -> (index, group).
Seen = Mapping[str, tuple[int, int]]


def delete_batch(
    device_names: Iterable[str],
    *,
    delete_group: int,
    restore_group: int = 0,
    link_group: int | None = None,
    seen: Seen | None = None,
) -> BatchResult:
    """The batch delete itself; failures are reported per name, not raised.

    With ``link_group``, a device in neither it nor ``delete_group`` is not
    ours: it is left alone and reported in ``left_alone``.  ``seen``: groups
    the caller read already, not read again while the name still has that
    index (``Deleter`` in aside mode looked at every device first).

    When the group delete fails (the kernel deletes a group all or nothing,
    e.g. EOPNOTSUPP if one device cannot be deleted at all), each device is
    deleted on its own so one bad name does not fail the others, and the
    survivors are moved to ``restore_group`` so the delete group is empty
    for the next batch.
    """
    check_delete_group(delete_group)
    result = BatchResult()
    wanted: list[str] = []
    for name in dict.fromkeys(device_names):
        try:
            names.validate_name(name)
        except exceptions.InvalidDeviceName as err:
            result.failed[name] = err
        else:
            wanted.append(name)
    if not wanted:
        return result
    with rtnl.kernel_call("open a netlink socket", _some(wanted)):
        sock = rtnl.ipr()
    with _lock_for(delete_group):
        moved = _move_to_group(sock, wanted, delete_group, result, link_group, seen or {})
        if not moved:
            return result
        result.group_delete_calls += 1
        try:
            with rtnl.kernel_call(f"delete link group {delete_group}", _some(moved)):
                sock.link("del", group=delete_group)
        except exceptions.VifplugError as err:
            if not rtnl.caused_by(err, errno.ENODEV):  # ENODEV: all gone meanwhile
                LOG.warning(
                    "group delete of %d devices failed (%s); deleting one by one", len(moved), err
                )
                _delete_one_by_one(sock, moved, restore_group, result)
                return result
        result.deleted.extend(moved)
    return result


def _some(device_names: list[str]) -> str:
    shown = ", ".join(device_names[:3])
    more = len(device_names) - 3
    return f"{shown} and {more} more" if more > 0 else shown


def _move_to_group(
    sock: Any,
    wanted: list[str],
    group: int,
    result: BatchResult,
    link_group: int | None,
    seen: Seen,
) -> list[str]:
    moved: list[str] = []
    for name in wanted:
        try:
            if link_group is None:
                owned.OWNED.discard(name)
                with rtnl.kernel_call("move to the delete group", name):
                    sock.link("set", ifname=name, group=group)
            else:
                index = _checked_index(name, group, link_group, result, seen)
                if index is None:
                    continue
                with rtnl.kernel_call("move to the delete group", name):
                    rtnl.set_link(index, group=group)  # the device checked, not a newcomer
        except exceptions.VifplugError as err:
            if rtnl.caused_by(err, errno.ENODEV):
                result.missing.append(name)
            else:
                result.failed[name] = err
        else:
            moved.append(name)
    return moved


def _checked_index(
    name: str, group: int, link_group: int, result: BatchResult, seen: Seen
) -> int | None:
    """The device's index once read back and found in our groups, or None
    (it is gone, or it is left alone, and ``result`` says which)."""
    try:
        index = socket.if_nametoindex(name)
    except OSError:  # no device of that name (the error carries no errno)
        owned.OWNED.discard(name)
        result.missing.append(name)
        return None
    if owned.OWNED.take(name, index) == link_group:
        return index  # the tap we made, under its name still
    known = seen.get(name)
    if known is not None and known[0] == index:
        found = known[1]  # read by the caller a moment ago, of this same device
    else:
        with rtnl.kernel_call("look up", name):
            found = rtnl.link_group(index)
    if found not in (link_group, group):
        result.left_alone[name] = f"not made by vifplug (link group {found}, not {link_group})"
        return None
    return index


def _delete_one_by_one(
    sock: Any, moved: list[str], restore_group: int, result: BatchResult
) -> None:
    for name in moved:
        try:
            with rtnl.kernel_call("delete", name):
                sock.link("del", ifname=name)
        except exceptions.VifplugError as err:
            if rtnl.caused_by(err, errno.ENODEV):
                result.deleted.append(name)
                continue
            result.failed[name] = err
            try:
                with rtnl.kernel_call("move out of the delete group", name):
                    sock.link("set", ifname=name, group=restore_group)
            except exceptions.VifplugError:
                LOG.exception("device %s stays in the delete group", name)
        else:
            result.deleted.append(name)


#: What became of a device asked to be put aside (``Deleter._rename_aside``).
_Put = Literal["aside", "gone", "now"]

#: Kinds of device that stand alone (no peer, no parent device, no ports):
#: with ``aside``, these are renamed aside and deleted in the background.
ASIDE_KINDS = frozenset({"tun"})


def aside_name(index: int) -> str:
    """The name a device is put aside under: unique while it lives (its ifindex)."""
    return f"vpdel{index:x}"


@dataclasses.dataclass
class _Request:
    names: tuple[str, ...]
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    deleted: list[str] = dataclasses.field(default_factory=list)
    left_alone: dict[str, str] = dataclasses.field(default_factory=dict)
    error: exceptions.VifplugError | None = None
    seen: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)


class Deleter:
    """A thread that deletes what many threads ask for, in shared batches.

    ``delete(names)`` blocks until its devices are gone; requests that arrive
    while a batch runs are deleted together by the next one (one group
    delete for all of them).  ``group_delete_calls`` counts the kernel group
    deletes made.  ``close()`` finishes what is queued and stops the thread.
    With ``link_group``, only devices in that group (or the delete group)
    are deleted; others are left alone and reported.  With ``aside``, taps
    are renamed aside instead and deleted by a reaper thread
    (see the module's docstring); ``close()`` then also waits for the reaper
    to delete them.
    """

    def __init__(
        self,
        *,
        delete_group: int,
        max_batch: int = 1024,
        link_group: int | None = None,
        aside: bool = False,
    ) -> None:
        check_delete_group(delete_group, link_group=link_group)
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.delete_group = delete_group
        self.link_group = link_group
        self.max_batch = max_batch
        self._aside = aside
        self._cond = threading.Condition()
        self._pending: list[_Request] = []
        self._closed = False
        self._group_delete_calls = 0
        self._batches = 0
        self._thread = threadnames.Thread(
            target=self._run, name=f"netdev-deleter-{delete_group}", daemon=True
        )
        self._reaper = _Reaper(delete_group) if aside else None
        self._thread.start()

    @classmethod
    def from_settings(cls, settings: conf.NetdevSettings) -> Deleter:
        """The daemon's deleter: its configured delete group, checked against its link group."""
        return cls(
            delete_group=settings.delete_group,
            link_group=settings.link_group,
            aside=settings.delete_aside,
        )

    @property
    def group_delete_calls(self) -> int:
        """Kernel ``link del group=`` calls made so far (the reaper's too)."""
        reaped = 0 if self._reaper is None else self._reaper.group_delete_calls
        with self._cond:
            return self._group_delete_calls + reaped

    @property
    def batches(self) -> int:
        """Batches of callers served so far."""
        with self._cond:
            return self._batches

    def delete(self, device_names: Iterable[str]) -> Deletion:
        """Delete the named devices; return those deleted and those left alone.

        Blocks until done: until the devices are gone, or put aside under
        another name to be deleted shortly (``aside``).  Missing devices are
        ignored.  Raises ``InvalidDeviceName`` before queueing anything for
        an unusable name, ``ShuttingDown`` after ``close()``, and the device's
        error if one of its devices could not be deleted.
        """
        wanted = tuple(dict.fromkeys(device_names))
        for name in wanted:
            names.validate_name(name)
        if not wanted:
            return Deletion()
        with self._cond:
            if self._closed:
                raise exceptions.ShuttingDown()
        aside = BatchResult()
        seen: dict[str, tuple[int, int]] = {}
        # In the caller's thread: through the deleter's one thread, every
        # rename waited for the GIL behind the callers (30 ms an unplug).
        rest = self._put_aside(wanted, aside, seen) if self._aside else list(wanted)
        if aside.deleted:
            assert self._reaper is not None
            self._reaper.wake()
        if not rest:
            return Deletion(deleted=aside.deleted)
        request = _Request(tuple(rest), seen=seen)
        with self._cond:
            if self._closed:
                raise exceptions.ShuttingDown()
            self._pending.append(request)
            self._cond.notify()
        request.done.wait()
        if request.error is not None:
            raise request.error
        gone = {*aside.deleted, *request.deleted}
        return Deletion(
            deleted=[name for name in wanted if name in gone], left_alone=request.left_alone
        )

    def flush(self) -> None:
        """Return once every device put aside before the call is deleted (at
        once without ``aside``): the daemon calls it before it is ready, so
        what the start-up reconciliation removed is gone from ``ip link``."""
        if self._reaper is not None:
            self._reaper.flush()

    def close(self) -> None:
        """Delete what is queued (and what is put aside), then stop.  Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not threading.current_thread():
            self._thread.join()
            if self._reaper is not None:
                self._reaper.close()

    def __enter__(self) -> Deleter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take(self) -> list[_Request] | None:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if not self._pending:
                return None
            batch: list[_Request] = []
            count = 0
            while self._pending and (
                not batch or count + len(self._pending[0].names) <= self.max_batch
            ):
                request = self._pending.pop(0)
                batch.append(request)
                count += len(request.names)
            return batch

    def _run(self) -> None:
        try:
            while (batch := self._take()) is not None:
                self._serve(batch)
        finally:
            rtnl.close_thread_socket()

    def _serve(self, batch: list[_Request]) -> None:
        union = list(dict.fromkeys(name for request in batch for name in request.names))
        seen = {name: got for request in batch for name, got in request.seen.items()}
        try:
            result = delete_batch(
                union, delete_group=self.delete_group, link_group=self.link_group, seen=seen
            )
        except Exception as err:  # never leave a caller waiting forever
            LOG.exception("batch delete of %d devices failed", len(union))
            failure = exceptions.NetdevError(
                operation="batch delete", device=union[0], reason=str(err)
            )
            result = BatchResult(failed=dict.fromkeys(union, failure))
        with self._cond:
            self._group_delete_calls += result.group_delete_calls
            self._batches += 1
        deleted = set(result.deleted)
        for request in batch:
            request.deleted = [name for name in request.names if name in deleted]
            request.left_alone = {
                name: result.left_alone[name] for name in request.names if name in result.left_alone
            }
            errors = [result.failed[name] for name in request.names if name in result.failed]
            if errors:
                request.error = _copy(errors[0])
            request.done.set()

    def _put_aside(
        self, union: Iterable[str], result: BatchResult, seen: dict[str, tuple[int, int]]
    ) -> list[str]:
        """Rename the taps of ``union`` aside into the delete group
        (``result.deleted``); return the names to delete now, and in ``seen``
        the groups read of them, which the batch delete need not read again."""
        rest: list[str] = []
        for name in union:
            if not self._aside:  # refused by this kernel, in this batch
                rest.append(name)
                continue
            try:
                index = socket.if_nametoindex(name)
            except OSError:  # gone (if_nametoindex's error carries no errno)
                owned.OWNED.discard(name)
                result.missing.append(name)
                continue
            if (
                self._may_put_aside(name, index, seen)
                and (put := self._rename_aside(name, index)) != "now"
            ):
                (result.deleted if put == "aside" else result.missing).append(name)
            else:
                rest.append(name)
        return rest

    def _may_put_aside(self, name: str, index: int, seen: dict[str, tuple[int, int]]) -> bool:
        """Whether the device ``index`` is ours and a kind that stands alone.
        Otherwise the batch delete handles it, and says why it left it alone."""
        made_in = owned.OWNED.take(name, index)
        if made_in is not None and self.link_group in (None, made_in):
            return True  # the tap we made, under its name still
        try:
            group, kind = rtnl.group_and_kind(index)
        except Exception:  # unanswered, or gone meanwhile: the batch delete says which
            return False
        seen[name] = (index, group)
        if self.link_group is not None and group not in (self.link_group, self.delete_group):
            return False
        return kind in ASIDE_KINDS

    def _rename_aside(self, name: str, index: int) -> _Put:
        """Rename the device ``index`` aside, in the delete group: ``"aside"``,
        ``"gone"`` if it vanished, or ``"now"`` if it must be deleted now
        instead (the aside name taken, the kernel refuses).

        It stays a port of whatever it was attached to (a bridge, the kernel
        datapath of Open vSwitch) until the group delete: asking the kernel
        to release it too fails for a datapath port (EOPNOTSUPP), after the
        kernel already renamed it."""
        try:
            rtnl.set_link(index, ifname=aside_name(index), group=self.delete_group)
        except Exception as err:  # every refusal falls back to deleting
            code = rtnl.errno_of(err)
            if code == errno.ENODEV:
                return "gone"
            if _renamed(index):  # the kernel applied part of the message
                return "aside"
            if code == errno.EBUSY:  # no renaming a device that is up (Linux < 6.2)
                LOG.warning("the kernel refuses to rename %s while up; deleting at once", name)
                self._aside = False
            else:
                LOG.warning("could not put %s aside (%s); deleting it at once", name, err)
            return "now"
        return "aside"


def _renamed(index: int) -> bool:
    try:
        return socket.if_indextoname(index) == aside_name(index)
    except OSError:
        return False


#: Least time (s) between the starts of two of the reaper's group deletes.
#: The kernel holds RTNL through most of a group delete, and every rename
#: aside, tap creation and link change waits for it: 500 unplugs by 16
#: threads waited 33 ms each for their renames with one delete after
#: another, against 52 ms for the deletes themselves without ``aside``.
REAP_INTERVAL = 0.2


class _Reaper:
    """Deletes the delete group in the background, at most once per
    ``REAP_INTERVAL`` while devices are put aside (``wake``): the devices put
    aside meanwhile go together in one delete.  What an earlier life of the
    daemon left there (a crash between a rename and its delete) is deleted
    first, in the constructing thread: before the daemon is ready."""

    def __init__(self, delete_group: int) -> None:
        self.delete_group = delete_group
        self._cond = threading.Condition()
        self._due = False
        self._closing = False
        self._calls = 0
        self._last = -REAP_INTERVAL
        self._urgent = False
        self._begun = self._done = 0  # deletes begun and done by the thread
        self._reap()
        self._thread = threadnames.Thread(
            target=self._run, name=f"netdev-reaper-{delete_group}", daemon=True
        )
        self._thread.start()

    @property
    def group_delete_calls(self) -> int:
        with self._cond:
            return self._calls

    def wake(self) -> None:
        with self._cond:
            self._due = True
            self._cond.notify()
            closing = self._closing
        if closing:  # the thread may have made its last delete already
            self._reap()

    def flush(self) -> None:
        """Start a delete now, whatever the interval, and return once it has
        ended (a failure is logged, as the thread's are)."""
        with self._cond:
            if self._closing:
                return  # ``close`` deletes what is aside
            wanted = self._begun + 1  # a delete that begins after this call
            self._due = self._urgent = True
            self._cond.notify_all()
            while self._done < wanted and not self._closing and self._thread.is_alive():
                self._cond.wait(1.0)

    def close(self) -> None:
        """Delete what is aside, then stop.  Idempotent."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        try:
            while self._next():
                self._reap()
                with self._cond:
                    self._done += 1
                    self._cond.notify_all()
        finally:
            rtnl.close_thread_socket()

    def _next(self) -> bool:
        """Wait until a delete is due and ``REAP_INTERVAL`` has passed since
        the last one began (at once when closing); False once there is
        nothing left to do and ``close`` was called."""
        with self._cond:
            while not self._due and not self._closing:
                self._cond.wait()
            if not self._due:
                return False
            not_before = self._last + REAP_INTERVAL
            while (
                not self._closing
                and not self._urgent
                and (left := not_before - time.monotonic()) > 0
            ):
                self._cond.wait(left)
            self._due = self._urgent = False
            self._begun += 1
            self._last = time.monotonic()
            return True

    def _reap(self) -> None:
        """One group delete; device by device if the kernel refuses the
        group.  Never raises: the thread must outlive any failure (the next
        ``wake`` retries), and so must the daemon's start."""
        try:
            with _lock_for(self.delete_group):
                with rtnl.kernel_call(f"delete link group {self.delete_group}", "aside devices"):
                    rtnl.ipr().link("del", group=self.delete_group)
                with self._cond:
                    self._calls += 1
        except exceptions.VifplugError as err:
            if rtnl.caused_by(err, errno.ENODEV):  # nothing was there
                return
            LOG.warning("group delete of the devices put aside failed (%s)", err)
            try:
                self._reap_one_by_one()
            except Exception:
                LOG.exception("could not delete the devices put aside one by one")
        except Exception:
            LOG.exception("group delete of the devices put aside failed")

    def _reap_one_by_one(self) -> None:
        with _lock_for(self.delete_group):
            for link in links.list_links(group=self.delete_group):
                try:
                    with rtnl.kernel_call("delete", link.name):
                        rtnl.ipr().link("del", index=link.index)
                except exceptions.VifplugError:
                    LOG.exception("device %s put aside stays in the delete group", link.name)


def _copy(err: exceptions.VifplugError) -> exceptions.VifplugError:
    """A fresh exception per waiting thread: one instance raised in many threads
    would have its traceback rewritten by each of them."""
    fresh = type(err)(**err.context)
    fresh.__cause__ = err.__cause__
    return fresh
