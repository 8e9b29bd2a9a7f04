"""The pace of the batch after an applied one (``ovsdb.pacing``), as pure logic."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vifplug.ovsdb.pacing import Pace


def released(awaited: int, answered: int, at_release: int, *, pace_max: float = 0.05) -> Pace:
    pace = Pace(pace_max)
    pace.committed(awaited, answered)
    pace.released(100.0, at_release)
    return pace


def test_a_split_round_waits_for_the_awaited_callers_and_the_held_writes() -> None:
    pace = released(awaited=10, answered=0, at_release=6)
    assert pace.hold(100.01, queued=6) > 0  # the 10 are not back yet
    assert pace.hold(100.01, queued=15) > 0
    assert pace.hold(100.01, queued=16) == 0  # 6 + 10: one batch


def test_callers_answered_at_commit_are_waited_for_once() -> None:
    """16 unplugs: those back by the release are in the queue, not on top of it."""
    pace = released(awaited=0, answered=16, at_release=10)
    assert pace.hold(100.01, queued=10) > 0
    assert pace.hold(100.01, queued=16) == 0
    lone = released(awaited=0, answered=1, at_release=1)  # an unplug, then its plug
    assert lone.hold(100.01, queued=1) == 0


def test_awaited_and_answered_callers_together() -> None:
    pace = released(awaited=10, answered=6, at_release=6)
    assert pace.hold(100.01, queued=15) > 0
    assert pace.hold(100.01, queued=16) == 0


def test_a_whole_batch_queued_at_the_release_leaves_at_once() -> None:
    """128 clients: more were waiting than the applied batch carried."""
    assert released(awaited=36, answered=0, at_release=50).hold(100.01, queued=50) == 0
    assert released(awaited=10, answered=6, at_release=16).hold(100.01, queued=16) == 0


def test_no_wait_while_nothing_is_queued() -> None:
    assert released(awaited=4, answered=4, at_release=0).hold(100.01, queued=0) == 0


def test_no_wait_before_a_release_nor_after_a_new_commit() -> None:
    pace = Pace(0.05)
    pace.committed(4, 0)
    assert pace.hold(100.0, queued=1) == 0
    pace = released(awaited=4, answered=0, at_release=0)
    pace.committed(2, 0)
    assert pace.hold(100.01, queued=1) == 0


def test_bounded_by_pace_max_from_the_release_then_over() -> None:
    pace = released(awaited=8, answered=0, at_release=0, pace_max=0.05)
    assert abs(pace.hold(100.02, queued=1) - 0.03) < 1e-9
    assert pace.hold(100.05, queued=1) == 0
    assert pace.hold(100.01, queued=1) == 0  # once over, over until the next release


def test_a_new_session_forgets_the_pace() -> None:
    pace = released(awaited=8, answered=8, at_release=2)
    pace.reset()
    assert pace.hold(100.01, queued=1) == 0


@given(
    awaited=st.integers(0, 300),
    answered=st.integers(0, 300),
    at_release=st.integers(0, 300),
    queued=st.integers(0, 700),
    elapsed=st.floats(0, 1, allow_nan=False),
)
def test_the_hold_never_outlasts_pace_max_nor_waits_for_more_than_can_come(
    awaited: int, answered: int, at_release: int, queued: int, elapsed: float
) -> None:
    pace = released(awaited, answered, at_release, pace_max=0.05)
    hold = pace.hold(100.0 + elapsed, queued)
    assert 0 <= hold <= max(0.0, 0.05 - elapsed) + 1e-12
    if hold > 0:
        assert at_release < awaited + answered
        assert 0 < queued < awaited + max(answered, at_release)
