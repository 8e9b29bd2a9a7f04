"""The taps this process made or adopted, by name and ifindex.

Why.  Before a device is put aside or deleted, the deleter makes sure it is
one of ours: a name it was given may since have been taken by a device
someone else made.  Asking the kernel (``RTM_GETLINK``, for the link group
and the kind) costs 0.37 ms of CPU, most of it pyroute2 decoding some forty
attributes to read two: a tenth of an unplug's CPU.  The tap made for a VIF
already says who it is: its ifindex.  The kernel hands out a network
namespace's ifindexes in a cycle over 2^31 and does not reuse one while the
cycle lasts, so a name that still resolves to the index its tap was made
with (``if_nametoindex``, one ioctl, 7 us) is that tap.

``ensure_tap`` notes a tap once it is ours and will outlive the call (made
persistent, or adopted), and reconciliation notes the persistent taps its
inventory found in our link group (``note_listed``): after a restart, those
are the taps of the VIFs in the state, and without them every unplug of a
VIF plugged before the restart would ask the kernel again what the
inventory's dump already read (a sixth of such an unplug's CPU).  The
deleter takes the entry when it handles the name.  An entry that outlives
its tap (a dump read just before an unplug put the tap aside) is harmless:
a later device of that name has another index.

Entries are per network namespace, by its cookie (``rtnl.netns_cookie``): a
process may plug into several, each thread in its own, and unlike a
namespace's inode number a cookie is never reused, so a namespace that died
and a new one (whose ifindexes start again at 1) are never confused.  On a
kernel without cookies (before 5.14) nothing is noted and the deleter asks
the kernel, as it does for a device this process neither made nor listed:
the table lives in memory only.

What this trusts, and what it does not guard against:

* the tap's link group: a tap vifplug made is deleted on its VIF's unplug
  even if an operator moved it out of the link group since (renaming it,
  instead, keeps it out of vifplug's hands);
* an index coming back under the same name: root deleting the tap behind
  vifplug's back and making another device with the same name and index
  (``ip link add ... index N``), or moving one in from another namespace
  where it had that index (``ip link set ... netns``, which keeps a free
  index).  That device is then taken for the tap.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterable

from vifplug.netdev import links, rtnl

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class _Made:
    index: int
    link_group: int


class OwnedTaps:
    """Taps of this process: (namespace cookie, name) -> the index and link
    group they were made with.  Never raises: without a namespace key, a tap
    is simply not known, and the caller asks the kernel."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._taps: dict[tuple[int, str], _Made] = {}

    def note(self, name: str, index: int, link_group: int) -> None:
        """``name`` is our tap with ``index``, in ``link_group``, from now on."""
        netns = _netns()
        if netns is not None:
            with self._lock:
                self._taps[netns, name] = _Made(index, link_group)

    def note_listed(self, listed: Iterable[links.LinkInfo], link_group: int) -> int:
        """Note the persistent taps of ``listed`` (one dump, read just now)
        that are in ``link_group``: what ``delete``'s check would read of
        them, their group and their kind, is what the dump said.  A tap in
        the making is left out: it is its maker's until it is persistent.
        Returns how many were noted."""
        netns = _netns()
        if netns is None:
            return 0
        found = {
            (netns, link.name): _Made(link.index, link.group)
            for link in listed
            if link.group == link_group and link.kind == "tun" and link.tun_persist
        }
        with self._lock:
            self._taps.update(found)
        return len(found)

    def take(self, name: str, index: int) -> int | None:
        """The link group of our tap ``name``, if ``index`` is still the one it
        was made with; None when it is not known to be ours.  Either way the
        entry is gone: the caller is about to delete the device or to check it."""
        netns = _netns()
        if netns is None:
            return None
        with self._lock:
            made = self._taps.pop((netns, name), None)
        return made.link_group if made is not None and made.index == index else None

    def discard(self, name: str) -> None:
        """Forget ``name`` (its device is gone)."""
        netns = _netns()
        if netns is not None:
            with self._lock:
                self._taps.pop((netns, name), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._taps)


def _netns() -> int | None:
    try:
        return rtnl.netns_cookie()
    except Exception:  # no netlink socket to ask (descriptors exhausted...)
        LOG.debug("no network namespace cookie; taps are checked with the kernel", exc_info=True)
        return None


#: The process's one table: every plug and unplug path shares it.
OWNED = OwnedTaps()


def note_listed(listed: Iterable[links.LinkInfo], link_group: int) -> int:
    """``OWNED.note_listed``: the persistent taps of a dump, in our link
    group, are ours (reconciliation's inventory)."""
    return OWNED.note_listed(listed, link_group)
