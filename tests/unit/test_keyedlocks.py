"""KeyedLocks: one lock per name, no lock shared by two names, none kept."""

from __future__ import annotations

import gc
import threading

from vifplug import keyedlocks


def _taker(locks: keyedlocks.KeyedLocks, *names: str | None) -> threading.Event:
    """Another thread taking ``names``; the event is set once it holds them."""
    entered = threading.Event()

    def take() -> None:
        with locks.held(*names):
            entered.set()

    threading.Thread(target=take, daemon=True).start()
    return entered


def _free(locks: keyedlocks.KeyedLocks, *names: str | None) -> bool:
    """Whether another thread gets ``names`` (given all the time a busy
    machine may need to schedule it: a free name is entered at once)."""
    return _taker(locks, *names).wait(30)


def _blocks(locks: keyedlocks.KeyedLocks, *names: str | None) -> bool:
    """Whether another thread taking ``names`` still waits after a while."""
    return not _taker(locks, *names).wait(0.5)


def test_a_held_name_excludes_the_same_name_only() -> None:
    locks = keyedlocks.KeyedLocks()
    with locks.held("vif-a"):
        # Among 4096 names, a set of 1024 hash-striped locks would put some
        # in vif-a's stripe (all but surely); here every other name is free.
        assert all(_free(locks, f"vif-{i}") for i in range(4096))
        assert _blocks(locks, "vif-a")
    assert _free(locks, "vif-a")


def test_several_names_are_all_held_and_none_is_ignored() -> None:
    locks = keyedlocks.KeyedLocks()
    with locks.held("b", None, "a", "a"):
        assert _blocks(locks, "a")
        assert _blocks(locks, "b")
        assert _free(locks, None)


def test_crosswise_callers_do_not_deadlock() -> None:
    """Two threads asking for the same two names in opposite orders finish."""
    locks = keyedlocks.KeyedLocks()
    rounds = 2000

    def loop(first: str, second: str) -> None:
        for _ in range(rounds):
            with locks.held(first, second):
                pass

    threads = [
        threading.Thread(target=loop, args=("x", "y"), daemon=True),
        threading.Thread(target=loop, args=("y", "x"), daemon=True),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)


def test_no_lock_is_kept_for_a_name_nobody_holds() -> None:
    locks = keyedlocks.KeyedLocks()
    for i in range(1000):
        with locks.held(f"vif-{i}"):
            assert len(locks) == 1
    gc.collect()
    assert len(locks) == 0
