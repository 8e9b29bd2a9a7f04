"""The taps this process made or adopted, by name and ifindex.

Why.  Before a device is put aside or deleted, the deleter makes sure it is
one of ours: a name it was given may since have been taken by a device
someone else made.  Asking the kernel (``RTM_GETLINK``, for the link group
and the kind) costs 0.37 ms of CPU, most of it pyroute2 decoding some forty
attributes to read two: a tenth of an unplug's CPU.  The tap made for a VIF
already says who it is: its ifindex.  The kernel hands out a network
namespace's ifindexes in a cycle over 2^31 and does not reuse one while the
cycle lasts, so a name that still resolves to the index its tap was made
with (``if_nametoindex``, one ioctl, 7 us) is that tap, in the link group
it was made in.

Only ``ensure_tap`` notes a tap, once it is ours and will outlive the call
(made persistent, or adopted); the deleter takes the entry when it handles
the name.  Entries are per network namespace (a process may plug into
several, each thread in its own), and the table lives in memory only: after
a restart it is empty and the deleter asks the kernel, as it always did.

What this does not guard against: root deleting the tap behind vifplug's
back and making another device with the same name *and* the same index
(``ip link add ... index N``).  That device is then taken for the tap.
"""

from __future__ import annotations

import dataclasses
import os
import threading

#: The network namespace of the calling thread (nsfs: one inode per namespace).
_NETNS = "/proc/thread-self/ns/net"


@dataclasses.dataclass(frozen=True)
class _Made:
    index: int
    link_group: int


class OwnedTaps:
    """Taps of this process: (namespace, name) -> the index and link group made with."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._taps: dict[tuple[int, str], _Made] = {}

    def note(self, name: str, index: int, link_group: int) -> None:
        """``name`` is our tap with ``index``, in ``link_group``, from now on."""
        with self._lock:
            self._taps[_netns(), name] = _Made(index, link_group)

    def take(self, name: str, index: int) -> int | None:
        """The link group of our tap ``name``, if ``index`` is still the one it
        was made with; None when it is not known to be ours.  Either way the
        entry is gone: the caller is about to delete the device or to check it."""
        with self._lock:
            made = self._taps.pop((_netns(), name), None)
        return made.link_group if made is not None and made.index == index else None

    def discard(self, name: str) -> None:
        """Forget ``name`` (its device is gone)."""
        with self._lock:
            self._taps.pop((_netns(), name), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._taps)


def _netns() -> int:
    return os.stat(_NETNS).st_ino


#: The process's one table: every plug and unplug path shares it.
OWNED = OwnedTaps()
