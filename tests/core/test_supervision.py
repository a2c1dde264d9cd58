"""Restart bookkeeping: which exits restart, the budget window, and the give-up verdict."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import RestartBudget
from core.supervision import ExitReason, Restart, RestartHistory, Verdict, decide_exit, window_ns

S = 1_000_000_000
BUDGET = RestartBudget(max_restarts=2, window_s=10.0)


@pytest.mark.parametrize(
    ("restart", "reason", "verdict"),
    [
        (Restart.PERMANENT, ExitReason.REQUESTED, Verdict.FORGET),
        (Restart.PERMANENT, ExitReason.FINISHED, Verdict.RESTART),
        (Restart.PERMANENT, ExitReason.UNEXPECTED, Verdict.RESTART),
        (Restart.TRANSIENT, ExitReason.REQUESTED, Verdict.FORGET),
        (Restart.TRANSIENT, ExitReason.FINISHED, Verdict.FORGET),
        (Restart.TRANSIENT, ExitReason.UNEXPECTED, Verdict.RESTART),
        (Restart.TEMPORARY, ExitReason.REQUESTED, Verdict.FORGET),
        (Restart.TEMPORARY, ExitReason.FINISHED, Verdict.FORGET),
        (Restart.TEMPORARY, ExitReason.UNEXPECTED, Verdict.FORGET),
    ],
)
def test_decide_exit_by_restart_type_and_reason_with_budget_left(
    restart: Restart, reason: ExitReason, verdict: Verdict,
) -> None:
    got, history = decide_exit(restart, reason, RestartHistory(), BUDGET, 5 * S)
    assert got is verdict
    assert history.times_ns == ((5 * S,) if verdict is Verdict.RESTART else ())


@pytest.mark.parametrize("reason", [ExitReason.UNEXPECTED, ExitReason.FINISHED])
def test_decide_exit_of_permanent_child_with_spent_budget_gives_up(reason: ExitReason) -> None:
    spent = RestartHistory(times_ns=(1 * S, 2 * S))
    verdict, history = decide_exit(Restart.PERMANENT, reason, spent, BUDGET, 3 * S)
    assert verdict is Verdict.GIVE_UP
    assert history == spent


def test_decide_exit_after_window_passed_restarts_again_and_drops_old_times() -> None:
    spent = RestartHistory(times_ns=(1 * S, 2 * S))
    verdict, history = decide_exit(Restart.TRANSIENT, ExitReason.UNEXPECTED, spent, BUDGET, 11 * S + 1)
    assert verdict is Verdict.RESTART
    assert history.times_ns == (2 * S, 11 * S + 1)


def test_restart_at_exact_window_edge_has_left_the_window() -> None:
    history = RestartHistory(times_ns=(0, 5 * S))
    assert history.count(BUDGET, 10 * S) == 1
    assert history.count(BUDGET, 10 * S - 1) == 2
    assert history.within(BUDGET, 10 * S - 1) is history


def test_zero_budget_never_restarts() -> None:
    verdict, _ = decide_exit(Restart.PERMANENT, ExitReason.UNEXPECTED, RestartHistory(),
                             RestartBudget(max_restarts=0, window_s=1.0), 0)
    assert verdict is Verdict.GIVE_UP


def test_window_ns_converts_fractional_seconds() -> None:
    assert window_ns(RestartBudget(max_restarts=1, window_s=0.25)) == S // 4


@settings(max_examples=100)
@given(
    max_restarts=st.integers(min_value=0, max_value=4),
    window_s=st.integers(min_value=1, max_value=20),
    gaps_s=st.lists(st.integers(min_value=0, max_value=15), max_size=30),
)
def test_restarts_inside_any_window_never_exceed_budget_and_give_up_only_when_spent(
    max_restarts: int, window_s: int, gaps_s: list[int],
) -> None:
    budget = RestartBudget(max_restarts=max_restarts, window_s=float(window_s))
    history, now, restarted = RestartHistory(), 0, []
    for gap in gaps_s:
        now += gap * S
        before = history.count(budget, now)
        verdict, history = decide_exit(Restart.PERMANENT, ExitReason.UNEXPECTED, history, budget, now)
        assert (verdict is Verdict.GIVE_UP) == (before >= max_restarts)
        if verdict is Verdict.RESTART:
            restarted.append(now)
    for end in restarted:
        inside = [t for t in restarted if end - window_s * S < t <= end]
        assert len(inside) <= max_restarts
