"""When the batch after one that ovs-vswitchd applied may leave: its pace.

Plugs that wait for their ofport are answered when ovs-vswitchd applies
their batch, and their callers come back with their next writes a few
milliseconds later.  Had the next batch left with whatever was queued at
that moment, the returning writes would wait a whole reconfiguration for
the one after (16 clients made batches of 10 and 6: half again as many
reconfigurations as 16 at a time).  So the next batch gathers, ``pace_max``
at most from the release, until it holds the writes queued at the release
plus one for each write of the applied batch whose caller was waiting for
that release.

Only those callers are counted.  One answered at its commit (an unplug, a
plug with ``wait=none``, reconciliation) is back in the queue before the
release, and is counted there; counting it again as returning kept every
such round waiting ``pace_max`` for a write that had already come.
Counting the writes queued at the release heals a split round: after
batches of 10 and 6, the 6 are queued when the 10 are released, and the
next batch waits for the 10 to come back instead of leaving with 6 + 4.

Pure bookkeeping, told the time and the counts by the connection's thread.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Pace:
    """The pace of the batch after the last applied one."""

    pace_max: float
    #: Writes of the last committed batch whose callers wait for ovs-vswitchd.
    awaited: int = 0
    #: Writes queued when ovs-vswitchd reported that batch applied.
    queued_at_release: int = 0
    released_at: float | None = None

    def committed(self, awaited: int) -> None:
        """A writing batch was committed; ``awaited`` of its callers wait for it
        to be applied."""
        self.awaited = awaited
        self.released_at = None

    def released(self, now: float, queued: int) -> None:
        """ovs-vswitchd applied the last batch; ``queued`` writes were waiting."""
        self.released_at = now
        self.queued_at_release = queued

    def reset(self) -> None:
        """A new session: the last batch's pace says nothing about the next."""
        self.awaited = 0
        self.queued_at_release = 0
        self.released_at = None

    def hold(self, now: float, queued: int) -> float:
        """Seconds the next batch should still gather, holding ``queued`` writes.

        Never while nothing is queued (a lone caller never waits for
        itself), nor when no caller of the last batch was waiting for it."""
        released = self.released_at
        if released is None or queued == 0 or self.awaited == 0:
            return 0.0
        if queued >= self.awaited + self.queued_at_release:
            return 0.0
        left = released + self.pace_max - now
        if left <= 0:
            self.released_at = None
            return 0.0
        return left
