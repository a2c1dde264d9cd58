"""Technical indicators (ATR, SMA, EMA, RSI, Bollinger, VWAP, Donchian), streaming and batch.

Every indicator comes in two forms that agree to 1e-9:

* a batch function over numpy arrays (``atr_batch(high, low, close, n)``) for warm-up from
  history, returning ``nan`` before the warm-up is complete;
* a streaming object (``Atr(n)``) whose ``update(...)`` does O(1) work and returns ``None``
  before the warm-up is complete. ``Atr.from_history(high, low, close, n)`` warms one up.
  Rolling sums keep a bound on their own rounding error and re-sum the ring buffer exactly
  when it could show (a spike leaving the window, or every few thousand updates): O(1)
  amortised, and no drift however long an actor streams.

Streaming objects are the one mutable thing in core/: an O(1) update rules out copying a
window into a new immutable value on every bar. They are still pure (no I/O, no clock), an
``update`` that raises leaves the object exactly as it was, and an actor snapshots one with
``copy()`` (or pickle) before handing it out.

Inputs may be float, int or Decimal; everything is computed in float64.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Self

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from core.errors import CoreError

Number = float | int | Decimal

_NAN: Final = float("nan")
_EPS: Final = 2.0**-52
# A streaming sum's (or band's) tracked rounding-error bound may reach this fraction of its
# scale before the window is re-summed exactly: three orders of magnitude inside the 1e-9 to
# which streaming and batch agree.
_RESUM_RTOL: Final = 1e-12


class InvalidIndicatorInput(CoreError, ValueError):
    """An indicator got an invalid period, multiplier or value (non-finite, high < low, ...)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Bands:
    """Bollinger bands at one bar."""

    middle: float
    upper: float
    lower: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Channel:
    """Donchian channel at one bar: the highest high and lowest low of the window."""

    upper: float
    lower: float

    @property
    def middle(self) -> float:
        """Return the midpoint of the channel."""
        return (self.upper + self.lower) / 2.0


# --------------------------------------------------------------------------- validation


def _period(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InvalidIndicatorInput(f"period n must be an integer >= 1, got {n!r}")
    return int(n)


def _multiplier(k: Number) -> float:
    value = _scalar("k", k)
    if value < 0.0:
        raise InvalidIndicatorInput(f"band multiplier k must be >= 0, got {k!r}")
    return value


def _scalar(name: str, x: Number) -> float:
    try:
        value = float(x)
    except (TypeError, ValueError) as exc:
        raise InvalidIndicatorInput(f"{name} must be a number, got {x!r}") from exc
    if not math.isfinite(value):
        raise InvalidIndicatorInput(f"{name} must be finite, got {x!r}")
    return value


def _bar(high: Number, low: Number) -> tuple[float, float]:
    h, lo = _scalar("high", high), _scalar("low", low)
    if h < lo:
        raise InvalidIndicatorInput(f"high {h!r} is below low {lo!r}")
    return h, lo


def _array(name: str, values: npt.ArrayLike) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidIndicatorInput(f"{name} must be a 1-D sequence of numbers") from exc
    if arr.ndim != 1:
        raise InvalidIndicatorInput(f"{name} must be 1-D, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InvalidIndicatorInput(f"{name} contains a non-finite value")
    return arr


def _arrays(**named: npt.ArrayLike) -> list[np.ndarray]:
    arrays = [_array(name, values) for name, values in named.items()]
    lengths = {len(a) for a in arrays}
    if len(lengths) > 1:
        sizes = ", ".join(f"{name}={len(a)}" for name, a in zip(named, arrays))
        raise InvalidIndicatorInput(f"input lengths differ: {sizes}")
    return arrays


def _bars(high: npt.ArrayLike, low: npt.ArrayLike, **more: npt.ArrayLike) -> list[np.ndarray]:
    arrays = _arrays(high=high, low=low, **more)
    bad = np.flatnonzero(arrays[0] < arrays[1])
    if bad.size:
        raise InvalidIndicatorInput(f"high is below low at index {int(bad[0])}")
    return arrays


def _nans(size: int) -> np.ndarray:
    return np.full(size, _NAN, dtype=np.float64)


# --------------------------------------------------------------------------- streaming base


class _Streaming:
    """Slotted mutable state with copy, equality and pickling over every slot."""

    __slots__ = ()

    def _slots(self) -> Iterator[str]:
        for klass in type(self).__mro__:
            yield from getattr(klass, "__slots__", ())

    def copy(self) -> Self:
        """Return an independent copy (a snapshot) of this indicator state."""
        clone = type(self).__new__(type(self))
        for name in self._slots():
            value = getattr(self, name)
            if isinstance(value, (list, deque, _Streaming)):
                value = value.copy()
            object.__setattr__(clone, name, value)
        return clone

    def __copy__(self) -> Self:
        return self.copy()

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        return self.copy()

    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._slots()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.__getstate__() == other.__getstate__()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        state = self.__getstate__().items()
        fields = ", ".join(f"{k}={v!r}" for k, v in state if not k.startswith("_"))
        return f"{type(self).__name__}({fields}, value={getattr(self, 'value', None)!r})"


class _RollingSum(_Streaming):
    """Sum of the last n values in a fixed ring buffer."""

    __slots__ = ("n", "_buf", "_pos", "_count", "_sum", "_err")

    def __init__(self, n: int) -> None:
        self.n = n
        self._buf = [0.0] * n
        self._pos = 0
        self._count = 0
        self._sum = 0.0
        self._err = 0.0  # bound on |_sum − exact sum of the window|

    @property
    def full(self) -> bool:
        return self._count == self.n

    @property
    def total(self) -> float:
        return self._sum

    @property
    def buffer(self) -> list[float]:
        return self._buf

    def push(self, x: float) -> float | None:
        old = self._buf[self._pos] if self.full else None
        self._buf[self._pos] = x
        self._pos += 1
        if self._count < self.n:
            self._count += 1
        if self._pos == self.n:
            self._pos = 0
        step = x if old is None else x - old
        self._sum += step
        self._err += _EPS * (abs(step) + abs(self._sum))
        # A running sum keeps the rounding error of every value that ever passed through: a
        # spike leaving the window (1e6 then cents) or a long drift would show. Re-sum exactly
        # when the error bound grows past the sum's scale: rare (every few thousand updates
        # for ordinary prices, or when a spike leaves), so still O(1) amortised.
        if self._err > _RESUM_RTOL * max(abs(self._sum), abs(x)):
            self._sum = math.fsum(self._buf)
            self._err = _EPS * abs(self._sum)
        return old


# --------------------------------------------------------------------------- SMA


class Sma(_Streaming):
    """Streaming simple moving average over the last n values."""

    __slots__ = ("n", "_win")

    def __init__(self, n: int) -> None:
        self.n = _period(n)
        self._win = _RollingSum(self.n)

    @property
    def value(self) -> float | None:
        """Return the current average, or None before n values were seen."""
        return self._win.total / self.n if self._win.full else None

    def update(self, x: Number) -> float | None:
        """Add one value; return the average of the last n, or None during warm-up."""
        self._win.push(_scalar("x", x))
        return self.value

    @classmethod
    def from_history(cls, values: npt.ArrayLike, n: int) -> Self:
        """Return an SMA warmed up on `values` (oldest first)."""
        state = cls(n)
        for x in _array("values", values).tolist():
            state.update(x)
        return state


def sma_batch(values: npt.ArrayLike, n: int) -> np.ndarray:
    """Return the simple moving average of `values` over n; nan before index n-1."""
    n = _period(n)
    x = _array("values", values)
    out = _nans(len(x))
    if len(x) >= n:
        out[n - 1:] = sliding_window_view(x, n).sum(axis=1) / n
    return out


# --------------------------------------------------------------------------- EMA


class Ema(_Streaming):
    """Streaming EMA with alpha = 2/(n+1).

    Seeded at the n-th value with the SMA of the first n values rather than with the first
    value alone, so early values do not lean on one bar; the first n-1 values give None.
    """

    __slots__ = ("n", "alpha", "_count", "_seed_sum", "_value")

    def __init__(self, n: int) -> None:
        self.n = _period(n)
        self.alpha = 2.0 / (self.n + 1)
        self._count = 0
        self._seed_sum = 0.0
        self._value: float | None = None

    @property
    def value(self) -> float | None:
        """Return the current EMA, or None before n values were seen."""
        return self._value

    def update(self, x: Number) -> float | None:
        """Add one value; return the EMA, or None during warm-up."""
        v = _scalar("x", x)
        if self._value is None:
            self._seed_sum += v
            self._count += 1
            if self._count == self.n:
                self._value = self._seed_sum / self.n
        else:
            self._value += self.alpha * (v - self._value)
        return self._value

    @classmethod
    def from_history(cls, values: npt.ArrayLike, n: int) -> Self:
        """Return an EMA warmed up on `values` (oldest first)."""
        state = cls(n)
        for x in _array("values", values).tolist():
            state.update(x)
        return state


def ema_batch(values: npt.ArrayLike, n: int) -> np.ndarray:
    """Return the EMA (alpha = 2/(n+1), SMA-seeded at index n-1) of `values`; nan before n-1."""
    n = _period(n)
    x = _array("values", values)
    out = _nans(len(x))
    if len(x) < n:
        return out
    xs = x.tolist()
    alpha = 2.0 / (n + 1)
    # The recursion is inherently sequential; a float loop keeps it bit-identical to Ema.update.
    seed = 0.0
    for v in xs[:n]:
        seed += v
    value = seed / n
    result = [value]
    for v in xs[n:]:
        value += alpha * (v - value)
        result.append(value)
    out[n - 1:] = result
    return out


# --------------------------------------------------------------------------- ATR


class Atr(_Streaming):
    """Streaming ATR: Wilder smoothing seeded with the mean of the first n true ranges."""

    __slots__ = ("n", "_prev_close", "_count", "_seed_sum", "_value")

    def __init__(self, n: int) -> None:
        self.n = _period(n)
        self._prev_close: float | None = None
        self._count = 0
        self._seed_sum = 0.0
        self._value: float | None = None

    @property
    def value(self) -> float | None:
        """Return the current ATR, or None before n bars were seen."""
        return self._value

    def update(self, high: Number, low: Number, close: Number) -> float | None:
        """Add one bar; return the ATR, or None during warm-up."""
        h, lo = _bar(high, low)
        c = _scalar("close", close)
        pc = self._prev_close
        # The first bar has no previous close, so its true range is just high - low.
        tr = h - lo if pc is None else max(h - lo, abs(h - pc), abs(lo - pc))
        if self._value is None:
            self._seed_sum += tr
            self._count += 1
            if self._count == self.n:
                self._value = self._seed_sum / self.n
        else:
            self._value = (self._value * (self.n - 1) + tr) / self.n
        self._prev_close = c
        return self._value

    @classmethod
    def from_history(
        cls, high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike, n: int
    ) -> Self:
        """Return an ATR warmed up on the bars (oldest first)."""
        state = cls(n)
        h, lo, c = _bars(high, low, close=close)
        for bar in zip(h.tolist(), lo.tolist(), c.tolist()):
            state.update(*bar)
        return state


def true_range_batch(high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike) -> np.ndarray:
    """Return each bar's true range; the first bar's is high - low."""
    h, lo, c = _bars(high, low, close=close)
    tr = h - lo
    if len(tr) > 1:
        pc = c[:-1]
        tr[1:] = np.maximum(tr[1:], np.maximum(np.abs(h[1:] - pc), np.abs(lo[1:] - pc)))
    return tr


def _wilder(values: list[float], n: int) -> list[float]:
    """Return Wilder's smoothing of `values` from index n-1 on, seeded with the first n's mean."""
    seed = 0.0
    for v in values[:n]:
        seed += v
    avg = seed / n
    result = [avg]
    for v in values[n:]:
        avg = (avg * (n - 1) + v) / n
        result.append(avg)
    return result


def atr_batch(high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike, n: int) -> np.ndarray:
    """Return the Wilder ATR of the bars over n; nan before index n-1."""
    n = _period(n)
    tr = true_range_batch(high, low, close)
    out = _nans(len(tr))
    if len(tr) >= n:
        out[n - 1:] = _wilder(tr.tolist(), n)
    return out


# --------------------------------------------------------------------------- RSI


def _rsi(avg_gain: float, avg_loss: float) -> float:
    # 100 - 100/(1 + gain/loss) rewritten to avoid dividing by a zero loss; no losses at all
    # (a constant series included) is RSI 100 by definition here.
    if avg_loss == 0.0:
        return 100.0
    return 100.0 * avg_gain / (avg_gain + avg_loss)


class Rsi(_Streaming):
    """Streaming Wilder RSI: average gain/loss seeded with the means of the first n changes."""

    __slots__ = ("n", "_prev", "_count", "_gain_sum", "_loss_sum", "_avg_gain", "_avg_loss")

    def __init__(self, n: int) -> None:
        self.n = _period(n)
        self._prev: float | None = None
        self._count = 0
        self._gain_sum = 0.0
        self._loss_sum = 0.0
        self._avg_gain: float | None = None
        self._avg_loss: float | None = None

    @property
    def value(self) -> float | None:
        """Return the current RSI in [0, 100], or None before n changes (n+1 values) were seen."""
        if self._avg_gain is None or self._avg_loss is None:
            return None
        return _rsi(self._avg_gain, self._avg_loss)

    def update(self, x: Number) -> float | None:
        """Add one value; return the RSI, or None during warm-up."""
        v = _scalar("x", x)
        prev, self._prev = self._prev, v
        if prev is None:
            return None
        change = v - prev
        gain = change if change > 0.0 else 0.0
        loss = -change if change < 0.0 else 0.0
        if self._avg_gain is None or self._avg_loss is None:
            self._gain_sum += gain
            self._loss_sum += loss
            self._count += 1
            if self._count == self.n:
                self._avg_gain = self._gain_sum / self.n
                self._avg_loss = self._loss_sum / self.n
        else:
            self._avg_gain = (self._avg_gain * (self.n - 1) + gain) / self.n
            self._avg_loss = (self._avg_loss * (self.n - 1) + loss) / self.n
        return self.value

    @classmethod
    def from_history(cls, values: npt.ArrayLike, n: int) -> Self:
        """Return an RSI warmed up on `values` (oldest first)."""
        state = cls(n)
        for x in _array("values", values).tolist():
            state.update(x)
        return state


def rsi_batch(values: npt.ArrayLike, n: int) -> np.ndarray:
    """Return the Wilder RSI of `values` over n changes; nan before index n."""
    n = _period(n)
    x = _array("values", values)
    out = _nans(len(x))
    if len(x) <= n:
        return out
    change = np.diff(x)
    gains = _wilder(np.where(change > 0.0, change, 0.0).tolist(), n)
    losses = _wilder(np.where(change < 0.0, -change, 0.0).tolist(), n)
    out[n:] = [_rsi(g, lo) for g, lo in zip(gains, losses)]
    return out


# --------------------------------------------------------------------------- Bollinger


class Bollinger(_Streaming):
    """Streaming Bollinger bands: SMA(n) ± k × the population standard deviation of the window.

    The deviation divides by n, not n-1 (Bollinger's own definition, as most charting packages).
    """

    __slots__ = ("n", "k", "_win", "_shift", "_s1", "_s2", "_s1_err", "_s2_err")

    def __init__(self, n: int, k: Number = 2.0) -> None:
        self.n = _period(n)
        self.k = _multiplier(k)
        self._win = _RollingSum(self.n)
        # Sums of (x − shift) and (x − shift)² over the window, the shift being the window's
        # mean at the last exact re-sum: prices far above their spread would otherwise cancel
        # catastrophically in Σx² − (Σx)²/n.
        self._shift = 0.0
        self._s1 = 0.0
        self._s2 = 0.0
        self._s1_err = 0.0  # bounds on the rounding error of _s1 and _s2
        self._s2_err = 0.0

    @property
    def value(self) -> Bands | None:
        """Return the current bands, or None before n values were seen."""
        if not self._win.full:
            return None
        mean = self._win.total / self.n
        width = self.k * math.sqrt(self._m2() / self.n)
        return Bands(middle=mean, upper=mean + width, lower=mean - width)

    def update(self, x: Number) -> Bands | None:
        """Add one value; return the bands, or None during warm-up."""
        v = _scalar("x", x)
        old = self._win.push(v)
        if old is None:
            if self._win.full:
                self._resum()
            return self.value
        a, b = v - self._shift, old - self._shift
        self._s1 += a - b
        self._s2 += a * a - b * b
        self._s1_err += _EPS * (2.0 * (abs(a) + abs(b)) + abs(self._s1))
        self._s2_err += _EPS * (4.0 * (a * a + b * b) + abs(self._s2))
        # When a spike leaves the window (or the price drifts far from the shift) the variance
        # is what remains after a large cancellation: re-sum exactly (O(n), rare) as soon as
        # the error bound could show in the bands.
        mean = self._win.total / self.n
        std = math.sqrt(self._m2() / self.n)
        if self._std_error() > _RESUM_RTOL * max(abs(mean), std):
            self._resum()
        return self.value

    def _m2(self) -> float:
        return max(0.0, self._s2 - self._s1 * self._s1 / self.n)

    def _std_error(self) -> float:
        s1, e1 = abs(self._s1), self._s1_err
        err = (
            self._s2_err
            + (2.0 * s1 * e1 + e1 * e1) / self.n
            + _EPS * (abs(self._s2) + 2.0 * s1 * s1 / self.n)
        )
        m2 = self._m2()
        if m2 > 2.0 * err:
            return err / math.sqrt(self.n * m2)
        return math.sqrt(2.0 * err / self.n)

    def _resum(self) -> None:
        buf = self._win.buffer
        self._shift = math.fsum(buf) / self.n
        dev = [b - self._shift for b in buf]
        self._s1 = math.fsum(dev)
        self._s2 = math.fsum(d * d for d in dev)
        self._s1_err = _EPS * sum(abs(d) for d in dev)
        self._s2_err = 3.0 * _EPS * self._s2

    @classmethod
    def from_history(cls, values: npt.ArrayLike, n: int, k: Number = 2.0) -> Self:
        """Return Bollinger bands warmed up on `values` (oldest first)."""
        state = cls(n, k)
        for x in _array("values", values).tolist():
            state.update(x)
        return state


def bollinger_batch(
    values: npt.ArrayLike, n: int, k: Number = 2.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (middle, upper, lower): SMA(n) ± k × population std over n; nan before n-1."""
    n = _period(n)
    k = _multiplier(k)
    x = _array("values", values)
    middle, upper, lower = _nans(len(x)), _nans(len(x)), _nans(len(x))
    if len(x) >= n:
        windows = sliding_window_view(x, n)
        mean = windows.sum(axis=1) / n
        std = np.sqrt(((windows - mean[:, None]) ** 2).sum(axis=1) / n)
        middle[n - 1:] = mean
        upper[n - 1:] = mean + k * std
        lower[n - 1:] = mean - k * std
    return middle, upper, lower


# --------------------------------------------------------------------------- VWAP


class Vwap(_Streaming):
    """Streaming VWAP: Σ(typical price × volume) / Σ volume since the session started.

    Typical price is (high + low + close) / 3. Until the session has traded some volume the
    VWAP is undefined (None); later zero-volume bars leave it unchanged.
    """

    __slots__ = ("_pv", "_volume")

    def __init__(self) -> None:
        self._pv = 0.0
        self._volume = 0.0

    @property
    def value(self) -> float | None:
        """Return the session VWAP, or None while the session has no volume."""
        return self._pv / self._volume if self._volume > 0.0 else None

    def update(
        self, high: Number, low: Number, close: Number, volume: Number, *, new_session: bool = False
    ) -> float | None:
        """Add one bar, first restarting the sums if it opens a new session; return the VWAP."""
        h, lo = _bar(high, low)
        c = _scalar("close", close)
        vol = _scalar("volume", volume)
        if vol < 0.0:
            raise InvalidIndicatorInput(f"volume must be >= 0, got {volume!r}")
        if new_session:
            self._pv = 0.0
            self._volume = 0.0
        self._pv += (h + lo + c) / 3.0 * vol
        self._volume += vol
        return self.value

    @classmethod
    def from_history(
        cls,
        high: npt.ArrayLike,
        low: npt.ArrayLike,
        close: npt.ArrayLike,
        volume: npt.ArrayLike,
        session_start: npt.ArrayLike | None = None,
    ) -> Self:
        """Return a VWAP warmed up on the bars; `session_start[i]` marks a bar opening a session."""
        h, lo, c, vol = _bars(high, low, close=close, volume=volume)
        starts = _session_starts(session_start, len(h))
        state = cls()
        for bar in zip(h.tolist(), lo.tolist(), c.tolist(), vol.tolist(), starts.tolist()):
            state.update(*bar[:4], new_session=bar[4])
        return state


def _session_starts(session_start: npt.ArrayLike | None, size: int) -> np.ndarray:
    if session_start is None:
        return np.zeros(size, dtype=bool)
    starts = np.asarray(session_start)
    if starts.size == 0 and size == 0:
        return np.zeros(0, dtype=bool)
    if starts.shape != (size,) or starts.dtype != np.bool_:
        raise InvalidIndicatorInput(f"session_start must be a bool array of length {size}")
    return starts


def vwap_batch(
    high: npt.ArrayLike,
    low: npt.ArrayLike,
    close: npt.ArrayLike,
    volume: npt.ArrayLike,
    session_start: npt.ArrayLike | None = None,
) -> np.ndarray:
    """Return the cumulative VWAP of the bars, restarting where `session_start` is True.

    A bar is nan while its session has traded no volume yet.
    """
    h, lo, c, vol = _bars(high, low, close=close, volume=volume)
    bad = np.flatnonzero(vol < 0.0)
    if bad.size:
        raise InvalidIndicatorInput(f"volume is negative at index {int(bad[0])}")
    starts = _session_starts(session_start, len(h))
    pv = (h + lo + c) / 3.0 * vol
    out = _nans(len(h))
    bounds = [0, *np.flatnonzero(starts[1:]) + 1, len(h)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        cum_pv = np.cumsum(pv[a:b])
        cum_vol = np.cumsum(vol[a:b])
        traded = cum_vol > 0.0
        out[a:b][traded] = cum_pv[traded] / cum_vol[traded]
    return out


# --------------------------------------------------------------------------- Donchian


class Donchian(_Streaming):
    """Streaming Donchian channel: highest high, lowest low of the last n bars (this one too)."""

    __slots__ = ("n", "_index", "_highs", "_lows")

    def __init__(self, n: int) -> None:
        self.n = _period(n)
        self._index = 0
        # Monotonic deques of (bar index, price): each price is pushed and popped once, so an
        # update is O(1) amortised and the front is always the window's extreme.
        self._highs: deque[tuple[int, float]] = deque()
        self._lows: deque[tuple[int, float]] = deque()

    @property
    def value(self) -> Channel | None:
        """Return the current channel, or None before n bars were seen."""
        if self._index < self.n:
            return None
        return Channel(upper=self._highs[0][1], lower=self._lows[0][1])

    def update(self, high: Number, low: Number) -> Channel | None:
        """Add one bar; return the channel, or None during warm-up."""
        h, lo = _bar(high, low)
        i = self._index
        while self._highs and self._highs[-1][1] <= h:
            self._highs.pop()
        self._highs.append((i, h))
        while self._lows and self._lows[-1][1] >= lo:
            self._lows.pop()
        self._lows.append((i, lo))
        oldest = i - self.n + 1
        if self._highs[0][0] < oldest:
            self._highs.popleft()
        if self._lows[0][0] < oldest:
            self._lows.popleft()
        self._index = i + 1
        return self.value

    @classmethod
    def from_history(cls, high: npt.ArrayLike, low: npt.ArrayLike, n: int) -> Self:
        """Return a Donchian channel warmed up on the bars (oldest first)."""
        state = cls(n)
        h, lo = _bars(high, low)
        for bar in zip(h.tolist(), lo.tolist()):
            state.update(*bar)
        return state


def donchian_batch(
    high: npt.ArrayLike, low: npt.ArrayLike, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return (upper, lower): rolling max of `high` and min of `low` over n; nan before n-1."""
    n = _period(n)
    h, lo = _bars(high, low)
    upper, lower = _nans(len(h)), _nans(len(h))
    if len(h) >= n:
        upper[n - 1:] = sliding_window_view(h, n).max(axis=1)
        lower[n - 1:] = sliding_window_view(lo, n).min(axis=1)
    return upper, lower
