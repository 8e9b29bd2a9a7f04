"""The pace of the batch after an applied one (``ovsdb.pacing``), as pure logic."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vifplug.ovsdb.pacing import Pace


def released(awaited: int, queued_at_release: int, *, pace_max: float = 0.05) -> Pace:
    pace = Pace(pace_max)
    pace.committed(awaited)
    pace.released(100.0, queued_at_release)
    return pace


def test_waits_for_the_awaited_callers_and_what_was_queued_at_the_release() -> None:
    pace = released(awaited=10, queued_at_release=6)
    assert pace.hold(100.01, queued=6) > 0  # the 10 are not back yet
    assert pace.hold(100.01, queued=15) > 0
    assert pace.hold(100.01, queued=16) == 0  # 6 + 10: one batch


def test_no_wait_when_no_caller_waited_for_the_batch() -> None:
    assert released(awaited=0, queued_at_release=3).hold(100.01, queued=3) == 0


def test_no_wait_while_nothing_is_queued() -> None:
    assert released(awaited=4, queued_at_release=0).hold(100.01, queued=0) == 0


def test_no_wait_before_a_release_nor_after_a_new_commit() -> None:
    pace = Pace(0.05)
    pace.committed(4)
    assert pace.hold(100.0, queued=1) == 0
    pace = released(awaited=4, queued_at_release=0)
    pace.committed(2)
    assert pace.hold(100.01, queued=1) == 0


def test_bounded_by_pace_max_from_the_release_then_over() -> None:
    pace = released(awaited=8, queued_at_release=0, pace_max=0.05)
    assert abs(pace.hold(100.02, queued=1) - 0.03) < 1e-9
    assert pace.hold(100.05, queued=1) == 0
    assert pace.hold(100.01, queued=1) == 0  # once over, over until the next release


def test_a_new_session_forgets_the_pace() -> None:
    pace = released(awaited=8, queued_at_release=2)
    pace.reset()
    assert pace.hold(100.01, queued=1) == 0


@given(
    awaited=st.integers(0, 300),
    at_release=st.integers(0, 300),
    queued=st.integers(0, 700),
    elapsed=st.floats(0, 1, allow_nan=False),
)
def test_the_hold_is_never_longer_than_what_is_left_of_pace_max(
    awaited: int, at_release: int, queued: int, elapsed: float
) -> None:
    pace = released(awaited, at_release, pace_max=0.05)
    hold = pace.hold(100.0 + elapsed, queued)
    assert 0 <= hold <= max(0.0, 0.05 - elapsed) + 1e-12
    if hold > 0:
        assert 0 < queued < awaited + at_release
