"""The chaos run's stall detectors: the longest stretch a condition held, per subject."""

from __future__ import annotations

from bench.chaos import Stretch


def test_the_longest_stretch_is_kept_and_a_break_ends_a_stretch() -> None:
    s = Stretch()
    for at, holds in ((0.0, False), (1.0, True), (5.0, True), (6.0, False), (10.0, True), (12.0, True)):
        s.seen(holds, at)
    assert s.longest == (1.0, 4.0, "")
    assert s.over(3.0) == (1.0, 4.0, "") and s.over(4.0) is None


def test_a_new_subject_starts_a_new_stretch() -> None:
    # A fault kind that cannot go in for 30 s, then another one for 40 s: neither stalled 70 s.
    s = Stretch()
    for at in range(0, 31, 5):
        s.seen(True, float(at), "kill_group")
    for at in range(31, 72, 5):
        s.seen(True, float(at), "drop")
    assert s.longest == (31.0, 40.0, "drop")
    assert s.over(60.0) is None


def test_a_stretch_still_open_at_the_end_counts() -> None:
    s = Stretch()
    s.seen(True, 45.0)
    s.seen(True, 300.0)
    assert s.over(15.0) == (45.0, 255.0, "")
