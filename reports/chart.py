"""The equity-curve and drawdown chart of a report, drawn with matplotlib's Agg canvas into PNG bytes."""

from __future__ import annotations

import io
from zoneinfo import ZoneInfo

import numpy as np
from matplotlib import dates as mdates
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

from core.analytics import Metrics

WIDTH_IN, HEIGHT_IN, DPI = 11.0, 6.5, 100
_EQUITY = "#1f5f99"
_DRAWDOWN = "#b03a2e"


def draw(m: Metrics, zone: ZoneInfo) -> bytes:
    """Return a PNG of equity (top) and drawdown % (bottom) over exchange time, or a notice without closes."""
    # A Figure on its own Agg canvas: no pyplot, so no global state and no display is touched.
    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    FigureCanvasAgg(fig)
    if len(m.equity) < 2:
        ax = fig.add_subplot()
        ax.set_axis_off()
        ax.text(0.5, 0.5, "No closed trades: no equity curve to draw", ha="center", va="center",
                fontsize=16, color="#555555", transform=ax.transAxes)
        return _png(fig)
    x = np.array([p.ts_ns for p in m.equity], dtype="datetime64[ns]")
    equity = np.array([float(p.equity) for p in m.equity])
    drawdown = np.array([float(p.drawdown_pct) for p in m.equity])
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1.3), "hspace": 0.08})
    top.step(x, equity, where="post", color=_EQUITY, linewidth=1.4)
    top.axhline(float(m.capital), color="#888888", linewidth=0.8, linestyle="--")
    top.set_ylabel("equity")
    top.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    top.set_title(f"Equity and drawdown at each close ({zone.key})", loc="left", fontsize=12)
    bottom.fill_between(x, drawdown, 0.0, step="post", color=_DRAWDOWN, alpha=0.45, linewidth=0)
    bottom.step(x, drawdown, where="post", color=_DRAWDOWN, linewidth=0.9)
    bottom.set_ylabel("drawdown")
    bottom.yaxis.set_major_formatter(PercentFormatter(decimals=1))
    bottom.set_ylim(top=0.0, bottom=min(float(drawdown.min()) * 1.1, -1.0))
    locator = mdates.AutoDateLocator(tz=zone)
    bottom.xaxis.set_major_locator(locator)
    bottom.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=zone))
    for ax in (top, bottom):
        ax.grid(True, color="#dddddd", linewidth=0.6)
        ax.margins(x=0.01)
    fig.subplots_adjust(left=0.09, right=0.98, top=0.93, bottom=0.08)
    return _png(fig)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return buf.getvalue()
