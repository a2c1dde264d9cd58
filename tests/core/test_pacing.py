"""Tests for core.pacing: the budget over any 1 s window, priorities, FIFO, no starvation, delays."""

from __future__ import annotations

from dataclasses import FrozenInstanceError

import pytest
from hypothesis import given, settings, strategies as st

from core.errors import ConfigError
from core.pacing import (
    DATA_BURST,
    DEFAULT_BURST,
    DEFAULT_RESERVE,
    IB_LIMIT_PER_S,
    RECEIVE_JITTER_NS,
    Paced,
    Pacer,
    Priority,
    drain,
    enqueue,
    new_pacer,
    next_release_ns,
    pending,
    ready,
    set_rate,
    written,
)

S = 1_000_000_000
MS = 1_000_000


def _max_in_closed_window(times: list[int], width_ns: int = S) -> int:
    """Return the most sends inside any closed window [t, t + width] (t a send time suffices)."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] < t - width_ns:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def _run(pacer: Pacer, until_ns: int, start_ns: int = 0) -> tuple[Pacer, list[Paced]]:
    """Drive the pacer as the actor does: wake at next_release_ns until the queue is empty."""
    now, out = start_ns, []
    while True:
        pacer, sent = ready(pacer, now)
        out.extend(sent)
        wake = next_release_ns(pacer, now)
        if wake is None or wake > until_ns:
            return pacer, out
        assert wake > now or sent == (), "a wake-up must make progress"
        now = max(wake, now)


# ---------------------------------------------------------------- construction


@pytest.mark.parametrize(("rate", "burst", "reserve"), [
    (0, None, None), (51, None, None), (-1, None, None), (True, None, None), (45.0, None, None),
    (45, 0, None), (45, 46, None), (10, 11, None), (45, 5, -1), (45, 5, 45), (45, 5, 1.0)])
def test_new_pacer_rejects_invalid_settings_with_config_error(rate: object, burst: object,
                                                              reserve: object) -> None:
    with pytest.raises(ConfigError):
        new_pacer(rate, burst, reserve)  # type: ignore[arg-type]


@pytest.mark.parametrize(("rate", "burst", "reserve"), [
    (45, DEFAULT_BURST, DEFAULT_RESERVE), (50, DEFAULT_BURST, DEFAULT_RESERVE), (10, 10, 2),
    (3, 3, 0), (1, 1, 0)])
def test_new_pacer_defaults_scale_down_with_the_rate(rate: int, burst: int, reserve: int) -> None:
    pacer = new_pacer(rate)
    assert (pacer.burst, pacer.reserve) == (burst, reserve)


def test_pacer_is_frozen() -> None:
    pacer = new_pacer()
    with pytest.raises(FrozenInstanceError):
        pacer.rate_per_s = 50  # type: ignore[misc]


def test_enqueue_leaves_the_original_pacer_untouched() -> None:
    pacer = new_pacer()
    after = enqueue(pacer, "a", Priority.DATA, 0)
    assert pending(pacer) == 0 and pending(after) == 1


# ---------------------------------------------------------------- tables


@pytest.mark.parametrize(("priority", "at_once"), [(Priority.CONTROL, 5), (Priority.URGENT, 5),
                                                   (Priority.ORDER, 4), (Priority.DATA, 4)])
def test_burst_size_leaves_the_last_token_to_urgent_messages(priority: Priority, at_once: int) -> None:
    pacer = new_pacer(45, 5)
    for i in range(8):
        pacer = enqueue(pacer, i, priority, 0)
    _, sent = ready(pacer, 0)
    assert [p.item for p in sent] == list(range(at_once))


def test_burst_leaves_at_once_then_one_per_interval() -> None:
    pacer = new_pacer(45, 5)
    for i in range(8):
        pacer = enqueue(pacer, i, Priority.URGENT, 0)
    pacer, sent = ready(pacer, 0)
    assert [p.item for p in sent] == [0, 1, 2, 3, 4]
    # The sixth message conforms one emission interval (1 s / 45, rounded up) later.
    assert next_release_ns(pacer, 0) == -(-S // 45)
    pacer, sent = ready(pacer, S // 45)
    assert sent == ()
    pacer, sent = ready(pacer, -(-S // 45))
    assert [p.item for p in sent] == [5]


def test_empty_pacer_has_no_release_time() -> None:
    assert next_release_ns(new_pacer(), 123) is None


def test_next_release_is_now_when_an_item_may_leave() -> None:
    pacer = enqueue(new_pacer(), "x", Priority.DATA, 10)
    assert next_release_ns(pacer, 50) == 50


@pytest.mark.parametrize(("priorities", "expected"), [
    ([Priority.DATA, Priority.ORDER, Priority.URGENT, Priority.CONTROL],
     [Priority.CONTROL, Priority.URGENT, Priority.ORDER, Priority.DATA]),
    ([Priority.ORDER, Priority.DATA, Priority.ORDER, Priority.URGENT],
     [Priority.URGENT, Priority.ORDER, Priority.ORDER, Priority.DATA]),
])
def test_ready_releases_higher_priority_first(priorities: list[Priority], expected: list[Priority]) -> None:
    pacer = new_pacer(45, 5)
    for i, p in enumerate(priorities):
        pacer = enqueue(pacer, (p, i), p, 0)
    _, sent = ready(pacer, 0)
    assert [p.priority for p in sent] == expected


def test_ready_keeps_fifo_within_a_priority() -> None:
    pacer = new_pacer(10, 1)
    for i in range(5):
        pacer = enqueue(pacer, f"cancel-{i}", Priority.URGENT, i)
    pacer, out = _run(pacer, 10 * S)
    assert [p.item for p in out] == [f"cancel-{i}" for i in range(5)]


def test_urgent_item_overtakes_waiting_data_requests() -> None:
    pacer = new_pacer(10, 1)
    for i in range(20):
        pacer = enqueue(pacer, f"data-{i}", Priority.DATA, 0)
    pacer, first = ready(pacer, 0)
    pacer = enqueue(pacer, "cancel", Priority.URGENT, 1)
    pacer, sent = ready(pacer, next_release_ns(pacer, 1) or 0)
    assert [p.item for p in first] == ["data-0"] and [p.item for p in sent] == ["cancel"]


def test_paced_item_reports_its_waiting_time() -> None:
    pacer = new_pacer(2, 1)
    pacer = enqueue(pacer, "a", Priority.DATA, 0)
    pacer = enqueue(pacer, "b", Priority.DATA, 0)
    pacer, out = _run(pacer, 10 * S)
    assert [(p.item, p.enqueued_ns, p.sent_ns, p.waited_ns) for p in out] == [
        ("a", 0, 0, 0), ("b", 0, S // 2, S // 2)]


@pytest.mark.parametrize(("priority", "cap"), [(Priority.URGENT, 10), (Priority.ORDER, 8)])
def test_window_guard_caps_a_second_even_after_idle_bursts(priority: Priority, cap: int) -> None:
    # With burst 5 and rate 10 the bucket alone would allow 5 + 10 = 15 sends in [0, 1 s];
    # the window guard keeps it at 10, and at 10 - reserve for ORDER and DATA.
    pacer = new_pacer(10, 5, 2)
    for i in range(40):
        pacer = enqueue(pacer, i, priority, 0)
    pacer, out = _run(pacer, 10 * S)
    assert len(out) == 40 and _max_in_closed_window([p.sent_ns for p in out]) == cap


def test_cancel_leaves_at_once_while_data_requests_saturate_the_budget() -> None:
    pacer, now, waits = new_pacer(45), 0, []
    for i in range(400):
        pacer = enqueue(pacer, f"data-{i}", Priority.DATA, 0)
    cancel_times = [k * S // 3 + 7 * MS for k in range(15)]  # 3 cancels/s for 5 s
    for t in cancel_times:
        while (wake := next_release_ns(pacer, now)) is not None and wake <= t:
            now = wake
            pacer, _ = ready(pacer, now)
        now = t
        pacer = enqueue(pacer, "cancel", Priority.URGENT, now)
        pacer, sent = ready(pacer, now)
        waits.extend(p.waited_ns for p in sent if p.priority is Priority.URGENT)
    assert pending(pacer, Priority.DATA) > 0, "data must still saturate the pacer"
    assert waits == [0] * len(cancel_times)


def test_clock_going_backwards_is_read_as_the_latest_time() -> None:
    pacer = new_pacer(1, 1)
    pacer = enqueue(pacer, "a", Priority.DATA, 5 * S)
    pacer, sent = ready(pacer, 5 * S)
    pacer = enqueue(pacer, "b", Priority.DATA, 1 * S)
    pacer, early = ready(pacer, 2 * S)
    assert [p.sent_ns for p in sent] == [5 * S] and early == ()
    assert next_release_ns(pacer, 0) == 6 * S + 1
    assert pacer.queues[Priority.DATA][0].enqueued_ns == 5 * S


def test_set_rate_halves_throughput_and_keeps_the_queue() -> None:
    pacer = new_pacer(40, 1)
    for i in range(60):
        pacer = enqueue(pacer, i, Priority.ORDER, 0)
    pacer, first = ready(pacer, 0)
    pacer = set_rate(pacer, 20, 1)
    assert pending(pacer) == 59 and (pacer.burst, pacer.reserve) == (1, 4)
    pacer, out = _run(pacer, 10 * S)
    out = [*first, *out]
    times = [p.sent_ns for p in out]
    assert len(times) == 60 and _max_in_closed_window(times[1:]) <= 20 - 4
    assert [p.item for p in out] == list(range(60))


def test_set_rate_never_allows_an_earlier_send() -> None:
    pacer = enqueue(new_pacer(45, 1), "a", Priority.DATA, 0)
    pacer, _ = ready(pacer, 0)
    pacer = enqueue(pacer, "b", Priority.DATA, 0)
    before, after = next_release_ns(pacer, 0), next_release_ns(set_rate(pacer, 13, 1), 0)
    assert before is not None and after is not None and after >= before


def test_drain_removes_selected_priorities_in_send_order() -> None:
    pacer = new_pacer()
    for item, p in [("d1", Priority.DATA), ("o1", Priority.ORDER), ("c1", Priority.URGENT),
                    ("d2", Priority.DATA)]:
        pacer = enqueue(pacer, item, p, 0)
    rest, taken = drain(pacer, frozenset({Priority.DATA, Priority.ORDER}))
    assert [q.item for q in taken] == ["o1", "d1", "d2"]
    assert pending(rest) == 1 and pending(rest, Priority.URGENT) == 1
    empty, everything = drain(pacer)
    assert pending(empty) == 0 and [q.item for q in everything] == ["c1", "o1", "d1", "d2"]


@pytest.mark.parametrize(("priority", "per_s"), [(Priority.URGENT, 45), (Priority.DATA, 40)])
def test_saturated_pacer_sustains_its_rate(priority: Priority, per_s: int) -> None:
    # URGENT may use the whole budget; ORDER and DATA the budget less the reserve.
    pacer = new_pacer(45)
    for i in range(10 * per_s):
        pacer = enqueue(pacer, i, priority, 0)
    pacer, out = _run(pacer, 60 * S)
    assert len(out) == 10 * per_s and pending(pacer) == 0
    assert 9 * S <= out[-1].sent_ns <= 10 * S + 10 * MS


def test_lower_priorities_are_not_starved_when_high_priority_stays_below_budget() -> None:
    # Cancels at 30/s for 10 s against a 45/s budget; 100 data requests queued at the start.
    pacer, now, data_done = new_pacer(45), 0, []
    for i in range(100):
        pacer = enqueue(pacer, f"data-{i}", Priority.DATA, 0)
    arrivals = [k * S // 30 for k in range(300)]
    out: list[Paced] = []
    for t in arrivals:
        while True:
            wake = next_release_ns(pacer, now)
            if wake is None or wake > t:
                break
            now = wake
            pacer, sent = ready(pacer, now)
            out.extend(sent)
        now = t
        pacer = enqueue(pacer, f"cancel-{t}", Priority.URGENT, t)
        pacer, sent = ready(pacer, now)
        out.extend(sent)
    pacer, rest = _run(pacer, 60 * S, start_ns=now)
    out.extend(rest)
    data_done = [p for p in out if p.priority is Priority.DATA]
    cancels = [p for p in out if p.priority is Priority.URGENT]
    assert len(data_done) == 100 and len(cancels) == 300
    # The data get the spare budget, 45 - 5 (reserve) - 30 = 10/s, while the cancels flow: half
    # of them leave in the first five seconds, all of them by the end of the cancel stream.
    assert sum(1 for p in data_done if p.sent_ns < 5 * S) >= 45
    assert data_done[-1].sent_ns < 10 * S + 500 * MS
    assert max(p.waited_ns for p in cancels) < 50 * MS


# ---------------------------------------------------------------- properties

_ops = st.lists(
    st.tuples(st.integers(0, 300 * MS),                  # time step to the next operation
              st.sampled_from(list(Priority)),
              st.booleans()),                             # True = enqueue, False = call ready
    min_size=1, max_size=150)


def _simulate(rate: int, burst: int, ops: list[tuple[int, Priority, bool]]) -> tuple[list[Paced], Pacer]:
    pacer, now, out, n = new_pacer(rate, burst), 0, [], 0
    for step, priority, is_enqueue in ops:
        now += step
        if is_enqueue:
            pacer = enqueue(pacer, (priority, n), priority, now)
            n += 1
        pacer, sent = ready(pacer, now)
        out.extend(sent)
    pacer, rest = _run(pacer, now + 3600 * S, start_ns=now)
    return out + rest, pacer


@settings(max_examples=120)
@given(rate=st.integers(1, IB_LIMIT_PER_S), burst_frac=st.floats(0, 1), ops=_ops)
def test_no_closed_one_second_window_holds_more_than_the_budget(
        rate: int, burst_frac: float, ops: list[tuple[int, Priority, bool]]) -> None:
    burst = max(1, round(burst_frac * rate))
    out, pacer = _simulate(rate, burst, ops)
    assert _max_in_closed_window([p.sent_ns for p in out]) <= rate <= IB_LIMIT_PER_S
    assert pending(pacer) == 0 and len(out) == sum(1 for *_, e in ops if e)


@settings(max_examples=120)
@given(rate=st.integers(1, IB_LIMIT_PER_S), ops=_ops,
       delays=st.lists(st.integers(0, 400 * MS), min_size=1, max_size=40))
def test_sends_counted_when_written_keep_every_window_of_write_times_within_the_budget(
        rate: int, ops: list[tuple[int, Priority, bool]], delays: list[int]) -> None:
    # A release may reach the wire late (its journal commit waited): counted at write time, the
    # frames TWS receives never exceed the budget in a second, however the delays fall.
    pacer, now, n, writes = new_pacer(rate, min(DEFAULT_BURST, rate)), 0, 0, []
    for i, (step, priority, is_enqueue) in enumerate(ops + [(50 * MS, Priority.DATA, False)] * 400):
        now += step
        if is_enqueue:
            pacer = enqueue(pacer, (priority, n), priority, now)
            n += 1
        pacer, sent = ready(pacer, now)
        if sent:
            now += delays[i % len(delays)]  # the commit, then the socket write
            pacer = written(pacer, len(sent), now)
            writes.extend([now] * len(sent))
    assert len(writes) == n
    assert _max_in_closed_window(writes) <= rate


@settings(max_examples=120)
@given(ops=_ops, lags=st.lists(st.integers(0, RECEIVE_JITTER_NS), min_size=1, max_size=60))
def test_tws_counting_at_its_reads_never_sees_the_limit_when_frames_arrive_up_to_the_jitter_late(
        ops: list[tuple[int, Priority, bool]], lags: list[int]) -> None:
    out, _ = _simulate(IB_LIMIT_PER_S - 5, DEFAULT_BURST, ops)
    arrivals = [p.sent_ns + lags[i % len(lags)] for i, p in enumerate(out)]
    assert _max_in_closed_window(arrivals) < IB_LIMIT_PER_S


def test_bar_bursts_one_second_apart_stay_under_the_limit_when_a_burst_is_read_late() -> None:
    # Rules on 1 s bars decide at every bar close: bursts exactly 1 s apart, each as large as the
    # burst allows, filling each second to the window's cap. TWS reading one burst 1 ms late
    # must still count fewer than 50 in its second.
    pacer, sent_at, now = new_pacer(45), [], 0
    for second in range(12):
        now = second * S
        for i in range(50):  # more than a second's budget: the pacer is never idle
            pacer = enqueue(pacer, (second, i), Priority.URGENT, now)
        pacer, out = _run(pacer, now + S - 1, start_ns=now)
        sent_at += [p.sent_ns for p in out]
    late = [t + MS if t % S == 0 else t for t in sent_at]  # every burst at a bar close read 1 ms late
    assert _max_in_closed_window(late) < IB_LIMIT_PER_S
    assert len(sent_at) >= 12 * 44  # the rate is kept: ~45/s


def test_written_moves_only_the_last_releases_and_never_backwards() -> None:
    pacer = new_pacer(45, 15)
    for i in range(3):
        pacer = enqueue(pacer, i, Priority.ORDER, 0)
    pacer, sent = ready(pacer, 10 * MS)
    assert len(sent) == 3 and pacer.recent == (10 * MS,) * 3
    later = written(pacer, 2, 110 * MS)
    assert later.recent == (10 * MS, 110 * MS, 110 * MS)
    assert later.tat == pacer.tat + 100 * MS * 45
    assert written(pacer, 3, 5 * MS).recent == pacer.recent  # a write is never before its release
    assert written(pacer, 0, 110 * MS).recent == pacer.recent


@settings(max_examples=120)
@given(rate=st.integers(1, IB_LIMIT_PER_S), ops=_ops)
def test_order_and_data_sends_leave_the_reserve_free_in_every_window(
        rate: int, ops: list[tuple[int, Priority, bool]]) -> None:
    out, pacer = _simulate(rate, min(DEFAULT_BURST, rate), ops)
    times = [p.sent_ns for p in out]
    for p in out:
        if p.priority in (Priority.ORDER, Priority.DATA):
            in_window = sum(1 for t in times if p.sent_ns - S <= t <= p.sent_ns)
            assert in_window <= rate - pacer.reserve


@settings(max_examples=120)
@given(rate=st.integers(1, 10), ops=_ops)
def test_every_release_is_the_oldest_item_of_the_highest_waiting_priority(
        rate: int, ops: list[tuple[int, Priority, bool]]) -> None:
    pacer, now, n = new_pacer(rate, 1), 0, 0
    model: list[tuple[Priority, int]] = []  # what waits, in enqueue order
    for step, priority, is_enqueue in ops + [(S, Priority.DATA, False)] * 200:
        now += step
        if is_enqueue:
            pacer = enqueue(pacer, (priority, n), priority, now)
            model.append((priority, n))
            n += 1
        pacer, sent = ready(pacer, now)
        for p in sent:
            top = min(pr for pr, _ in model)
            expected = next(m for m in model if m[0] == top)
            assert p.item == expected and p.priority == top and p.waited_ns >= 0
            model.remove(expected)
    assert model == []


@settings(max_examples=80)
@given(rate=st.integers(1, IB_LIMIT_PER_S), ops=_ops)
def test_next_release_is_exact_sending_then_succeeds_and_earlier_sends_nothing(
        rate: int, ops: list[tuple[int, Priority, bool]]) -> None:
    pacer, now = new_pacer(rate), 0
    for step, priority, is_enqueue in ops:
        now += step
        if is_enqueue:
            pacer = enqueue(pacer, "x", priority, now)
        wake = next_release_ns(pacer, now)
        if wake is None:
            continue
        assert wake >= now
        if wake > now:
            assert ready(pacer, wake - 1)[1] == ()
        pacer, sent = ready(pacer, wake)
        assert len(sent) >= 1
        now = wake


def test_four_brackets_decided_together_leave_at_once_and_the_window_still_caps_the_second() -> None:
    # Bar-driven rules decide in clusters; twelve legs within 250 ms must not queue behind each
    # other, while a closed 1 s window still never holds more than the rate allows ORDER.
    pacer, released = new_pacer(45), []
    for bracket in range(4):
        now = bracket * 80 * MS
        for leg in range(3):
            pacer = enqueue(pacer, (bracket, leg), Priority.ORDER, now)
        pacer, sent = ready(pacer, now)
        released += sent
    assert [p.item for p in released] == [(b, leg) for b in range(4) for leg in range(3)]
    assert all(p.waited_ns == 0 for p in released)
    many = new_pacer(45)
    for i in range(100):
        many = enqueue(many, i, Priority.ORDER, 0)
    times: list[int] = []
    now = 0
    while pending(many):
        now = next_release_ns(many, now) or now
        many, sent = ready(many, now)
        times += [p.sent_ns for p in sent]
    assert max(sum(1 for t in times if start <= t <= start + S) for start in times) <= 45 - DEFAULT_RESERVE


@pytest.mark.parametrize(("priority", "at_once"), [(Priority.URGENT, DEFAULT_BURST), (Priority.ORDER, DEFAULT_BURST - 1),
                                                   (Priority.DATA, DATA_BURST - 1)])
def test_default_burst_lets_orders_leave_together_but_not_a_flood_of_data(priority: Priority, at_once: int) -> None:
    pacer = new_pacer(45)
    for i in range(30):
        pacer = enqueue(pacer, i, priority, 0)
    _, sent = ready(pacer, 0)
    assert len(sent) == at_once
