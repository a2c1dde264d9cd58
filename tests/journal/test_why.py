"""Tests of "why was this order sent": the chain from a ref, group id or broker id, and its text."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from core.orders import OrderStatus
from core.types import OrderType, Side, TimeInForce
from journal.store import RULES_EVENT, ExecRow, FiringRow, IntentRow, Journal, JournalError, OrderRow, SignalRow
from journal.why import NONE, NotInJournal, render_why, why

D = Decimal
T0 = 1_704_205_800_000_000_000  # 2024-01-02 14:30:00 UTC
GROUP = "AAPL-1-3"


def _leg(leg: str, broker_id: int, side: Side, order_type: OrderType, status: OrderStatus, *,
         limit: Decimal | None = None, stop: Decimal | None = None, filled: Decimal = D(0),
         avg: Decimal = D(0)) -> OrderRow:
    return OrderRow(ref=f"{GROUP}:{leg}", group_id=GROUP, symbol="AAPL", side=side, quantity=D("100"),
                    order_type=order_type, limit_price=limit, stop_price=stop, tif=TimeInForce.GTC,
                    parent_ref="" if leg == "entry" else f"{GROUP}:entry", broker_id=broker_id,
                    status=status, filled=filled, avg_fill_price=avg, first_ts_ns=T0 + 3_000_000,
                    updated_ns=T0 + 60_000_000_000)


def _bracket(j: Journal) -> None:
    """Journal one signal → firing → approved bracket intent → 3 legs → 2 fills, plus another group."""
    j.record_signal(SignalRow(signal_id="sig-7", ts_ns=T0, symbol="AAPL", accepted=True,
                              data={"direction": "up", "confidence": D("0.82")}))
    j.record_firing(FiringRow(ts_ns=T0 + 1_000_000, symbol="AAPL", rule="atr_bracket", rules_version="v3",
                              trigger="signal", signal_id="sig-7", why="confidence 0.82 >= 0.6",
                              intent_id=GROUP))
    j.record_intent(IntentRow(intent_id=GROUP, ts_ns=T0 + 2_000_000, symbol="AAPL", side=Side.BUY,
                              quantity=D("100"), order_type=OrderType.LMT, limit_price=D("101.50"),
                              tif=TimeInForce.GTC, stop_loss=D("99.00"), take_profit=D("105.00"),
                              kind="BRACKET", legs=3, rule="atr_bracket", rules_version="v3",
                              signal_id="sig-7", market_price=D("101.48")))
    j.decide_intent(GROUP, decision="APPROVED", ts_ns=T0 + 2_500_000)
    # transmit order: the entry first, the last child transmits the group
    j.upsert_order(_leg("entry", 1042, Side.BUY, OrderType.LMT, OrderStatus.FILLED, limit=D("101.50"),
                        filled=D("100"), avg=D("101.45")))
    j.upsert_order(_leg("stop", 1043, Side.SELL, OrderType.STP, OrderStatus.CANCELLED, stop=D("99.00")))
    j.upsert_order(_leg("target", 1044, Side.SELL, OrderType.LMT, OrderStatus.FILLED, limit=D("105.00"),
                        filled=D("100"), avg=D("105.00")))
    j.resolve_intent(GROUP, resolution="SENT", reason="3 legs placed", ts_ns=T0 + 4_000_000)
    j.record_execution(ExecRow(exec_id="0001.01", ref=f"{GROUP}:entry", order_id=1042, symbol="AAPL",
                               side=Side.BUY, quantity=D("100"), price=D("101.45"), ts_ns=T0 + 5_000_000_000))
    j.record_commission("0001.01", commission=D("1.00"), realized_pnl=None, ts_ns=T0 + 5_100_000_000)
    j.record_execution(ExecRow(exec_id="0002.01", ref=f"{GROUP}:target", order_id=1044, symbol="AAPL",
                               side=Side.SELL, quantity=D("100"), price=D("105.00"), ts_ns=T0 + 60_000_000_000,
                               commission=D("1.05"), realized_pnl=D("352.95")))
    j.record_event("oca_cancel", ts_ns=T0 + 60_000_000_001, ref=f"{GROUP}:stop", text="sibling filled")
    # noise that must stay out of the chain
    j.record_intent(IntentRow(intent_id="MSFT-1-1", ts_ns=T0, symbol="MSFT", side=Side.SELL,
                              quantity=D("5"), order_type=OrderType.MKT))
    j.upsert_order(OrderRow(ref="MSFT-1-1:entry", group_id="MSFT-1-1", symbol="MSFT", side=Side.SELL,
                            quantity=D("5"), order_type=OrderType.MKT, broker_id=2000))
    j.record_event("oca_cancel", ts_ns=T0, ref="MSFT-1-1:entry", text="other group")


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal.open(tmp_path / "j.sqlite") as j:
        _bracket(j)
        yield j


@pytest.mark.parametrize("asked", [f"{GROUP}:entry", f"{GROUP}:target", GROUP, "1042", "1043", " 1044 "])
def test_why_finds_the_whole_chain_from_a_ref_group_id_or_broker_id(journal: Journal, asked: str) -> None:
    chain = why(journal, asked)
    assert chain.group_id == GROUP and chain.query == asked.strip()
    assert chain.intent is not None and chain.intent.intent_id == GROUP
    assert chain.signal is not None and chain.signal.signal_id == "sig-7"
    assert [f.rule for f in chain.firings] == ["atr_bracket"]
    assert [o.ref for o in chain.orders] == [f"{GROUP}:entry", f"{GROUP}:stop", f"{GROUP}:target"]
    assert [e.exec_id for e in chain.executions] == ["0001.01", "0002.01"]
    assert [e.text for e in chain.events] == ["sibling filled"]


def _in_order(text: str, parts: list[str]) -> None:
    at = 0
    for part in parts:
        found = text.find(part, at)
        assert found >= 0, f"{part!r} missing after position {at} in:\n{text}"
        at = found + len(part)


def test_render_why_shows_every_link_in_order(journal: Journal) -> None:
    text = render_why(why(journal, "1042"))
    _in_order(text, [
        "why AAPL-1-3 (asked for 1042)",
        "signal", "sig-7  AAPL  2024-01-02 14:30:00.000 UTC  accepted", "direction=up  confidence=0.82",
        "rule", "atr_bracket  version v3  trigger signal", "why: confidence 0.82 >= 0.6",
        "intent", "AAPL-1-3  AAPL  BUY 100 LMT @ 101.50 GTC", "bracket: stop-loss 99.00  take-profit 105.00",
        "kind BRACKET, 3 leg(s), market 101.48",
        "risk", "APPROVED",
        "orders", "AAPL-1-3:entry", "#1042", "BUY 100 LMT @ 101.50", "Filled", "filled 100 @ 101.45",
        "AAPL-1-3:stop", "#1043", "SELL 100 STP stop 99.00", "Cancelled",
        "AAPL-1-3:target", "#1044", "Filled",
        "fills", "0001.01", "BUY 100 @ 101.45", "commission 1.00", "2024-01-02 14:30:05.000 UTC",
        "0002.01", "SELL 100 @ 105.00", "commission 1.05", "realized 352.95",
        "resolution", "SENT", "reason: 3 legs placed",
        "events", "oca_cancel", "sibling filled",
        "total", "filled BUY 100, SELL 100 in 2 fill(s); commissions 2.05; realized P&L 352.95",
    ])
    assert "MSFT" not in text and NONE not in text


def test_render_why_aligns_columns_and_sections(journal: Journal) -> None:
    lines = render_why(why(journal, GROUP)).splitlines()
    legs = [line for line in lines if f"{GROUP}:" in line and "#10" in line]
    assert len(legs) == 3
    for column in ("#10", "filled "):
        assert len({line.index(column) for line in legs}) == 1, legs
    bodies = [line for line in lines[1:] if line.strip()]
    assert len({len(line) - len(line[12:].lstrip()) for line in bodies if line[12] != " "}) == 1


def test_denied_intent_shows_the_limit_and_detail_and_no_orders(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.sqlite") as j:
        j.record_intent(IntentRow(intent_id="TSLA-2-1", ts_ns=T0, symbol="TSLA", side=Side.BUY,
                                  quantity=D("600"), order_type=OrderType.MKT, rule="breakout"))
        j.decide_intent("TSLA-2-1", decision="DENIED", limit_name="max_position",
                        detail="position would be 600 > 500 shares", ts_ns=T0 + 1)
        j.resolve_intent("TSLA-2-1", resolution="ABANDONED", reason="denied by risk", ts_ns=T0 + 2)
        chain = why(j, "TSLA-2-1")
    text = render_why(chain)
    assert chain.orders == () and chain.executions == () and chain.signal is None
    _in_order(text, ["signal      " + NONE, "rule        breakout  version -  (its firing was not journaled)",
                     "intent      TSLA-2-1  TSLA  BUY 600 MKT DAY",
                     "risk        DENIED  limit max_position", "detail: position would be 600 > 500 shares",
                     "orders      " + NONE, "fills       " + NONE, "resolution  ABANDONED",
                     "reason: denied by risk", "total       nothing filled"])


@pytest.mark.parametrize("ref", ["ext-77", ""])
def test_external_order_without_intent_says_which_links_are_missing(tmp_path: Path, ref: str) -> None:
    with Journal.open(tmp_path / "j.sqlite") as j:
        j.record_firing(FiringRow(ts_ns=T0, symbol="AAPL", rule="noise"))  # no intent: must not leak in
        j.record_event("admin", ts_ns=T0, text="unrelated")
        j.upsert_order(OrderRow(ref=ref, symbol="AAPL", side=Side.SELL, quantity=D("10"),
                                order_type=OrderType.LMT, limit_price=D("190"), broker_id=77,
                                status=OrderStatus.SUBMITTED, external=True))
        j.record_event("external_order", ts_ns=T0, ref="ext-77", text="placed in TWS")
        chain = why(j, "77")
    text = render_why(chain)
    assert [o.broker_id for o in chain.orders] == [77] and chain.intent is None and chain.firings == ()
    assert [e.text for e in chain.events] == (["placed in TWS"] if ref else [])
    _in_order(text, ["signal      " + NONE, "rule        " + NONE, "intent      " + NONE,
                     "risk        " + NONE, "#77", "Submitted", "external", "fills       " + NONE])
    assert "unrelated" not in text and "noise" not in text


@pytest.mark.parametrize("asked, searched", [
    ("AAPL-9-9", "order refs and order group / intent ids"),
    ("9999", "broker order ids"),
])
def test_unknown_order_raises_not_in_journal_with_latest_intents(journal: Journal, asked: str,
                                                                 searched: str) -> None:
    with pytest.raises(NotInJournal) as info:
        why(journal, asked)
    message = str(info.value)
    assert isinstance(info.value, JournalError)
    for part in (repr(asked), str(journal.path), searched, "python bootstrap.py why", "MSFT-1-1, AAPL-1-3"):
        assert part in message, message


def test_unknown_order_in_an_empty_journal_says_there_are_no_intents(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.sqlite") as j, pytest.raises(NotInJournal, match="no intents yet"):
        why(j, "AAPL-1-1")


def test_why_shows_what_the_rule_said_in_the_version_that_fired(journal: Journal) -> None:
    def loaded(version: str, when: str) -> None:
        rule = {"name": "atr_bracket", "on": "signal", "when": when, "all": ["known(atr(14))"],
                "action": {"type": "open_bracket", "side": "buy", "risk": "100", "stop_atr": None, "quantity": None}}
        journal.record_event(RULES_EVENT, ts_ns=T0, ref=version, data={"version": version, "rules": [rule]})

    loaded("v2", "signal.confidence >= 0.9")   # an older version of the rule
    loaded("v3", "signal.confidence >= 0.6")   # the one that fired
    text = render_why(why(journal, GROUP))
    _in_order(text, ["rule", "atr_bracket  version v3", "why: confidence 0.82 >= 0.6",
                     "rule: on signal when (signal.confidence >= 0.6) and (known(atr(14)))",
                     "action: open_bracket (side=buy, risk=100)", "intent"])
    assert ">= 0.9" not in text
