"""When the batch after one that ovs-vswitchd applied may leave: its pace.

Plugs that wait for their ofport are answered when ovs-vswitchd applies
their batch, and their callers come back with their next writes a few
milliseconds later.  Had the next batch left with whatever was queued at
that moment, the returning writes would wait a whole reconfiguration for
the one after (16 clients made batches of 10 and 6: half again as many
reconfigurations as 16 at a time).  So the next batch gathers, ``pace_max``
at most from the release, until every caller of the applied batch can be
back, and the writes that were queued for other reasons with them.

Two kinds of callers are told apart.  One that waits for ovs-vswitchd
(``awaited``: a plug answered at its ofport) is answered at the release
and comes back after it.  One answered at its commit (an unplug, a plug
with ``wait=none``, reconciliation) may be back already, queued at the
release.  So the writes queued at the release are taken to be those
callers first: the batch waits for ``awaited + max(answered, queued)``.
Unless the queue held a whole batch's worth at the release already (many
more clients than one batch carries): that batch leaves at once, and the
returning callers make the next one while ovs-vswitchd applies it.
Counting both the answered callers and the queue in full made a lone
unplug followed by its caller's plug wait ``pace_max`` for a write that
had already come; counting only the batch's own callers left a split round
split: after batches of 10 and 6, the 6 are queued when the 10 are
released, and the next batch left with 6 + 4 instead of waiting for the
10 to come back.

Pure bookkeeping, told the time and the counts by the connection's thread.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Pace:
    """The pace of the batch after the last applied one."""

    pace_max: float
    #: Writes of the last committed batch whose callers wait for ovs-vswitchd
    #: to apply it, and those whose callers were answered at its commit.
    awaited: int = 0
    answered: int = 0
    #: Writes queued when ovs-vswitchd reported that batch applied.
    queued_at_release: int = 0
    released_at: float | None = None

    def committed(self, awaited: int, answered: int) -> None:
        """A writing batch was committed: ``awaited`` of its writes' callers
        wait for it to be applied, ``answered`` were answered now."""
        self.awaited = awaited
        self.answered = answered
        self.released_at = None

    def released(self, now: float, queued: int) -> None:
        """ovs-vswitchd applied the last batch; ``queued`` writes were waiting."""
        self.released_at = now
        self.queued_at_release = queued

    def reset(self) -> None:
        """A new session: the last batch's pace says nothing about the next."""
        self.awaited = 0
        self.answered = 0
        self.queued_at_release = 0
        self.released_at = None

    def target(self) -> int:
        """How many queued writes the next batch gathers for."""
        batch = self.awaited + self.answered
        if self.queued_at_release >= batch:
            return 0  # a whole batch was waiting: it leaves now
        return self.awaited + max(self.answered, self.queued_at_release)

    def hold(self, now: float, queued: int) -> float:
        """Seconds the next batch should still gather, holding ``queued`` writes.

        Never while nothing is queued: a lone caller never waits for itself."""
        released = self.released_at
        if released is None or queued == 0:
            return 0.0
        if queued >= self.target():
            return 0.0
        left = released + self.pace_max - now
        if left <= 0:
            self.released_at = None
            return 0.0
        return left
