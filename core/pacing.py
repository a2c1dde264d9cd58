"""The socket-wide outbound pacer: one token bucket and a 1 s window over every message, by priority.

Three limits hold together, all counted over every message the socket sends:

* a token bucket (GCRA form) refilled at `rate_per_s`, holding up to `burst` tokens, so a bracket
  or a flatten leaves at once and the long-run rate is the budget;
* a window guard: no closed 1 s window ever holds more than `rate_per_s` sends (<= IB's 50), so
  a burst after an idle spell is paid back inside the same second instead of stacking on the rate;
* a jitter guard: no window of 1 s + `RECEIVE_JITTER_NS` holds `IB_LIMIT_PER_S` sends, so TWS,
  which counts at its reads, never sees 50 in one second when frames reach it up to that late.

Part of both is kept for CONTROL and URGENT messages, as the field notes ask (neither ib_async's
nor nautilus_trader's throttle does this): ORDER and DATA never take the bucket's last token and
leave only while the window holds fewer than `rate_per_s - reserve` sends. A cancel therefore
leaves at once while new orders and data requests saturate the budget, and the strict priority
order never lets a lower message pass a waiting higher one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Final

from core.errors import ConfigError

# IB accepts at most 50 client messages per second, summed over every message type (orders,
# modifies, cancels, data requests) and every API client of one TWS. Beyond it: error 100 and,
# most likely, a disconnect.
IB_LIMIT_PER_S: Final = 50
DEFAULT_RATE_PER_S: Final = 45  # ib_async's headroom
# Fifteen messages may leave at once: five brackets (three legs each) decided together, or the
# cancels and stops of a flatten, do not wait 22 ms per message behind each other. Bar-driven
# rules decide in clusters (every symbol's bar closes in the same fraction of a second): with a
# burst of 5, four brackets a second arriving within 250 ms waited up to 95 ms (p99) in the
# pacer alone; with 15, none waited (bench/bench_runtime, and a replay of that arrival pattern
# through this module). The burst never lifts a 1 s window above the rate: the window guard caps
# every closed 1 s window at `rate_per_s` sends whatever the burst, which is how IB counts (and
# how ib_async paces: 45 requests in any 1 s, all at once if they come at once).
DEFAULT_BURST: Final = 15
# Data requests come in bulk (a subscription for every symbol at start, a resubscription after
# 1101) and are never urgent: they take at most this many tokens at once, so a flood of them does
# not fill the 1 s window in a fraction of a second and leave cancels only the reserve.
DATA_BURST: Final = 5
# Window slots per second that only CONTROL and URGENT messages may use; at most a fifth of the rate.
DEFAULT_RESERVE: Final = 5
# TWS counts messages when it reads them, and a reader that stalls (a loaded machine, a Java GC
# pause) or a send that lingers in the socket moves one burst next to another: bar-driven bursts
# exactly 1 s apart under a 1 s cap then land in one of TWS's seconds (chaos seed 1 saw 51 once).
# Hence the hard guard: no window of 1 s plus this jitter ever holds IB_LIMIT_PER_S sends, so
# arrivals delayed by up to this much never make 50 in a second. At 45/s it costs under 1 %
# of sustained throughput (49 per 1.1 s).
RECEIVE_JITTER_NS: Final = 100_000_000

_NS: Final = 1_000_000_000


class Priority(IntEnum):
    """Send order: a lower value leaves first; within one priority, first in, first out.

    FIFO holds only within a priority: messages that must reach TWS in order (a bracket's parent
    before its children) take one priority.
    """

    # The heartbeat (reqCurrentTime) and the reconciliation requests after a (re)connect. They are
    # few by construction (one heartbeat per interval, about six requests per connect), so they
    # cannot starve anything; a starved heartbeat would instead time out and tear down a healthy
    # socket in the middle of a cancel storm, and new orders are held until reconciliation ends.
    CONTROL = 0
    # Cancels and protective orders (stop-loss, take-profit, flatten): they reduce risk.
    URGENT = 1
    # New orders and modifies.
    ORDER = 2
    # Market data, historical data, account and position snapshots.
    DATA = 3


_RESERVED_FOR: Final = frozenset({Priority.CONTROL, Priority.URGENT})


@dataclass(frozen=True, slots=True, kw_only=True)
class Queued:
    """One message waiting to leave."""

    item: object
    priority: Priority
    enqueued_ns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Paced:
    """One message released to the wire, with how long the pacer held it."""

    item: object
    priority: Priority
    enqueued_ns: int
    sent_ns: int

    @property
    def waited_ns(self) -> int:
        """Return the pacing delay: time from enqueue to release."""
        return self.sent_ns - self.enqueued_ns


@dataclass(frozen=True, slots=True, kw_only=True)
class Pacer:
    """The pacer's state; build it with `new_pacer`, advance it with `enqueue` and `ready`."""

    rate_per_s: int
    burst: int
    reserve: int
    # The bucket in GCRA form: `tat` is the theoretical arrival time of the next conforming
    # message, kept in ns x rate_per_s so the emission interval (1e9 / rate ns) stays an integer.
    tat: int | None = None
    recent: tuple[int, ...] = ()  # the last IB_LIMIT_PER_S send times, oldest first
    queues: tuple[tuple[Queued, ...], ...] = ((),) * len(Priority)
    last_ns: int | None = None    # the latest time seen; an earlier `now_ns` is read as this one
    sent: int = 0                 # messages released since the pacer was built


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _settings(rate_per_s: int, burst: int | None, reserve: int | None) -> tuple[int, int, int]:
    if not _is_int(rate_per_s) or not 1 <= rate_per_s <= IB_LIMIT_PER_S:
        raise ConfigError([f"broker.pacing_msgs_per_s: {rate_per_s!r} is invalid; expected an "
                           f"integer 1..{IB_LIMIT_PER_S}"])
    burst = min(DEFAULT_BURST, rate_per_s) if burst is None else burst
    reserve = min(DEFAULT_RESERVE, rate_per_s // 5) if reserve is None else reserve
    problems = []
    if not _is_int(burst) or not 1 <= burst <= rate_per_s:
        problems.append(f"pacing burst: {burst!r} is invalid; expected an integer 1..{rate_per_s}")
    if not _is_int(reserve) or not 0 <= reserve < rate_per_s:
        problems.append(f"pacing reserve: {reserve!r} is invalid; expected an integer "
                        f"0..{rate_per_s - 1}")
    if problems:
        raise ConfigError(problems)
    return rate_per_s, burst, reserve


def new_pacer(rate_per_s: int = DEFAULT_RATE_PER_S, burst: int | None = None,
              reserve: int | None = None) -> Pacer:
    """Return an empty pacer releasing at most `rate_per_s` messages in any closed 1 s window."""
    rate_per_s, burst, reserve = _settings(rate_per_s, burst, reserve)
    return Pacer(rate_per_s=rate_per_s, burst=burst, reserve=reserve)


def set_rate(pacer: Pacer, rate_per_s: int, burst: int | None = None,
             reserve: int | None = None) -> Pacer:
    """Return the pacer at a new rate (e.g. halved after error 100); queue and history are kept."""
    rate_per_s, burst, reserve = _settings(rate_per_s, burst, reserve)
    # Rescale the theoretical arrival time to the new unit, rounding up: never earlier than before.
    tat = None if pacer.tat is None else -(-pacer.tat * rate_per_s // pacer.rate_per_s)
    return replace(pacer, rate_per_s=rate_per_s, burst=burst, reserve=reserve, tat=tat)


def _clock(pacer: Pacer, now_ns: int) -> int:
    return now_ns if pacer.last_ns is None or now_ns > pacer.last_ns else pacer.last_ns


def _earliest_send_ns(pacer: Pacer, now_ns: int, priority: Priority) -> int:
    """Return the first time >= now_ns at which one more `priority` message fits both limits."""
    reserved = priority in _RESERVED_FOR
    at = now_ns
    if pacer.tat is not None:
        # ORDER and DATA never take the last token: a cancel right behind them needs no wait.
        tokens = pacer.burst if reserved else max(1, pacer.burst - 1)
        if priority is Priority.DATA:
            tokens = min(tokens, max(1, DATA_BURST - 1))
        at = max(at, -(-(pacer.tat - (tokens - 1) * _NS) // pacer.rate_per_s))
    cap = pacer.rate_per_s if reserved else pacer.rate_per_s - pacer.reserve
    if len(pacer.recent) >= cap:
        # Strictly more than 1 s after the cap-th last send: even a closed [t, t + 1 s] window
        # then holds at most `cap` sends, however IB draws its window.
        at = max(at, pacer.recent[-cap] + _NS + 1)
    hard = IB_LIMIT_PER_S - 1
    if len(pacer.recent) >= hard:
        at = max(at, pacer.recent[-hard] + _NS + RECEIVE_JITTER_NS + 1)
    return at


def _record_send(pacer: Pacer, now_ns: int) -> Pacer:
    base = now_ns * pacer.rate_per_s
    tat = base if pacer.tat is None or pacer.tat < base else pacer.tat
    return replace(pacer, tat=tat + _NS, recent=(pacer.recent + (now_ns,))[-IB_LIMIT_PER_S:],
                   sent=pacer.sent + 1)


def _top(queues: tuple[tuple[Queued, ...], ...] | list[tuple[Queued, ...]]) -> int | None:
    return next((p for p, q in enumerate(queues) if q), None)


def enqueue(pacer: Pacer, item: object, priority: Priority, now_ns: int) -> Pacer:
    """Return the pacer with `item` queued behind every earlier item of its priority."""
    priority = Priority(priority)
    now_ns = _clock(pacer, now_ns)
    entry = Queued(item=item, priority=priority, enqueued_ns=now_ns)
    queues = tuple(q + (entry,) if p == priority else q for p, q in enumerate(pacer.queues))
    return replace(pacer, queues=queues, last_ns=now_ns)


def ready(pacer: Pacer, now_ns: int) -> tuple[Pacer, tuple[Paced, ...]]:
    """Release every queued item the budget allows at `now_ns`, highest priority first."""
    now_ns = _clock(pacer, now_ns)
    queues = list(pacer.queues)
    released: list[Paced] = []
    # A lower priority's limits are never looser than a higher one's, so when the top waiting
    # item may not leave, nothing may: strict priority without a lower message slipping past.
    while (p := _top(queues)) is not None and _earliest_send_ns(pacer, now_ns, Priority(p)) <= now_ns:
        head, queues[p] = queues[p][0], queues[p][1:]
        pacer = _record_send(pacer, now_ns)
        released.append(Paced(item=head.item, priority=head.priority, enqueued_ns=head.enqueued_ns,
                              sent_ns=now_ns))
    return replace(pacer, queues=tuple(queues), last_ns=now_ns), tuple(released)


def written(pacer: Pacer, count: int, now_ns: int) -> Pacer:
    """Return the pacer with its last `count` releases counted as sent at `now_ns` (when they hit the wire).

    The window guard counts release times, but a release can reach the socket later (its journal
    commit waited for the write lock ~100 ms): frames released early and written late would then
    bunch up with the next ones at the receiver, above the budget in one of TWS's seconds. Counted
    at write time, the limits hold for what TWS receives. The bucket moves on by the same delay.
    """
    now_ns = _clock(pacer, now_ns)
    count = min(count, len(pacer.recent))
    if count <= 0 or pacer.recent[-count] >= now_ns:
        return replace(pacer, last_ns=now_ns)
    delay = now_ns - pacer.recent[-count]
    recent = pacer.recent[:-count] + tuple(max(t, now_ns) for t in pacer.recent[-count:])
    tat = None if pacer.tat is None else pacer.tat + delay * pacer.rate_per_s
    return replace(pacer, recent=recent, tat=tat, last_ns=now_ns)


def next_release_ns(pacer: Pacer, now_ns: int) -> int | None:
    """Return when the next queued item may leave (>= now_ns), or None when nothing waits."""
    p = _top(pacer.queues)
    if p is None:
        return None
    return _earliest_send_ns(pacer, _clock(pacer, now_ns), Priority(p))


def pending(pacer: Pacer, priority: Priority | None = None) -> int:
    """Return how many items wait, in all priorities or in one."""
    if priority is None:
        return sum(len(q) for q in pacer.queues)
    return len(pacer.queues[Priority(priority)])


def drain(pacer: Pacer, priorities: frozenset[Priority] = frozenset(Priority)
          ) -> tuple[Pacer, tuple[Queued, ...]]:
    """Remove and return the waiting items of `priorities` (all by default), in send order."""
    taken = tuple(e for p, q in enumerate(pacer.queues) if p in priorities for e in q)
    queues = tuple(() if p in priorities else q for p, q in enumerate(pacer.queues))
    return replace(pacer, queues=queues), taken
