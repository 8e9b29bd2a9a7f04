"""Locks by name: one lock per name in use, never one shared by two names.

A plug holds its VIF's lock, and its iface-id's, while its port write waits
for a shared OVSDB transaction, which waits for ovs-vswitchd.  Striped locks
(a fixed set, picked by hash) made unrelated VIFs wait for each other
whenever two names fell in one stripe (among 128 plugs in flight and 1024
stripes, about eight pairs are expected to): the second of a pair waited
for the first's commit.  oslo.concurrency's ``Semaphores`` keeps a lock for a name
only while someone holds or waits for it (a weak-valued mapping), so the set
never grows with the names it has seen.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from oslo_concurrency import lockutils


class KeyedLocks:
    """Mutual exclusion per name, within this process."""

    def __init__(self) -> None:
        self._semaphores = lockutils.Semaphores()

    @contextlib.contextmanager
    def held(self, *names: str | None) -> Iterator[None]:
        """Hold the lock of every name given (``None`` stands for none).

        They are taken in sorted order, so two callers that need the same two
        names never wait for each other crosswise."""
        with contextlib.ExitStack() as stack:
            for name in sorted({n for n in names if n is not None}):
                stack.enter_context(self._semaphores.get(name))
            yield

    def __len__(self) -> int:
        """How many names have a lock now (held or waited for)."""
        return len(self._semaphores)
