"""The quote channel's datagram codec and endpoint: round trips, refusals with reasons, latest wins."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors import quote_channel as qc
from core.types import Quote
from messages import QuoteUpdate

D = Decimal
TOKEN = "0123456789abcdef"

prices = st.one_of(st.none(), st.decimals(min_value=D("0.0001"), max_value=D("1e9"), places=4,
                                          allow_nan=False, allow_infinity=False))
sizes = st.decimals(min_value=D(0), max_value=D("1e12"), places=2, allow_nan=False, allow_infinity=False)
symbols = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="|"),
                  min_size=1, max_size=12)


def _update(symbol: str = "AAPL", last: str | None = "101.25", coalesced: int = 7) -> QuoteUpdate:
    quote = Quote(symbol=symbol, bid=D("101.24"), ask=D("101.26"), last=None if last is None else D(last),
                  bid_size=D(300), ask_size=D(200), last_size=D(5), volume=D(123456), ts_ns=1_700_000_000_123)
    return QuoteUpdate(quote=quote, coalesced=coalesced, ts_ns=1_700_000_000_456)


@given(symbol=symbols, bid=prices, ask=prices, last=prices, size=sizes, seq=st.integers(0, 2**62),
       coalesced=st.integers(0, 10**6), ts=st.integers(0, 2**63 - 1))
def test_quote_datagram_round_trips_every_field(symbol: str, bid: Decimal | None, ask: Decimal | None,
                                                last: Decimal | None, size: Decimal, seq: int,
                                                coalesced: int, ts: int) -> None:
    quote = Quote(symbol=symbol, bid=bid, ask=ask, last=last, bid_size=size, ask_size=size, last_size=size,
                  volume=size, ts_ns=ts)
    sent = QuoteUpdate(quote=quote, coalesced=coalesced, ts_ns=ts)
    got_seq, got = qc.decode_quote(qc.encode_quote(TOKEN, seq, sent), TOKEN)
    assert got_seq == seq
    assert (got.quote, got.coalesced, got.ts_ns) == (sent.quote, sent.coalesced, sent.ts_ns)


def test_quote_datagram_is_small_ascii() -> None:
    data = qc.encode_quote(TOKEN, 42, _update())
    assert data.isascii() and len(data) < 200


@pytest.mark.parametrize(("data", "reason"), [
    (b"\xff\xfe", "not ASCII"),
    (b"A1|t|1|AAPL", "expected a Q1 datagram"),
    (b"Q1|" + TOKEN.encode() + b"|1|AAPL", "has 4 fields, expected 14"),
    (qc.encode_quote("another-token", 1, _update()), "foreign token"),
    (qc.encode_quote(TOKEN, 1, _update()).replace(b"|101.25|", b"|abc|"), "last 'abc' is not a number"),
    (qc.encode_quote(TOKEN, 1, _update()).replace(b"|101.25|", b"|NaN|"), "last 'NaN' is not finite"),
    (qc.encode_quote(TOKEN, 1, _update()).replace(b"|1|AAPL|", b"|-1|AAPL|"), "seq -1 is negative"),
    (qc.encode_quote(TOKEN, 1, _update()).replace(b"|1|AAPL|", b"|x|AAPL|"), "seq 'x' is not an integer"),
    (qc.encode_quote(TOKEN, 1, _update()).replace(b"|300|", b"||"), "bid_size '' is not a number"),
])
def test_malformed_or_foreign_quote_datagram_is_refused_with_its_reason(data: bytes, reason: str) -> None:
    with pytest.raises(qc.ChannelError, match=reason):
        qc.decode_quote(data, TOKEN)


@pytest.mark.parametrize("symbol", ["", "A|B", "AAPL\n", "ÄPFEL"])
def test_symbol_that_cannot_travel_in_a_datagram_is_refused_on_encode(symbol: str) -> None:
    assert not qc.usable_symbol(symbol)
    with pytest.raises(qc.ChannelError, match="cannot travel"):
        qc.encode_quote(TOKEN, 1, QuoteUpdate(quote=Quote(symbol=symbol)))


def test_ack_round_trips_and_malformed_ack_is_refused() -> None:
    assert qc.decode_ack(qc.encode_ack(TOKEN, 9, "MSFT")) == qc.Ack(token=TOKEN, seq=9, symbol="MSFT")
    with pytest.raises(qc.ChannelError, match="expected a A1 datagram"):
        qc.decode_ack(b"Q1|x|1|MSFT")
    with pytest.raises(qc.ChannelError, match="seq 'z' is not an integer"):
        qc.decode_ack(b"A1|x|z|MSFT")


def test_latest_quote_takes_the_highest_sequence_and_lists_refusals() -> None:
    sender = ("127.0.0.1", 5000)
    datagrams = [(qc.encode_quote(TOKEN, 3, _update(last="103")), sender),
                 (b"junk", sender),
                 (qc.encode_quote(TOKEN, 5, _update(last="105")), sender),
                 (qc.encode_quote(TOKEN, 4, _update(last="104")), sender),
                 (qc.encode_quote("intruder", 99, _update(last="999")), sender)]
    best, refused = qc.latest_quote(datagrams, TOKEN)
    assert best is not None
    seq, update, reply_to = best
    assert (seq, update.quote.last, reply_to) == (5, D("105"), sender)
    assert len(refused) == 2 and any("foreign token" in r for r in refused)
    assert qc.latest_quote([], TOKEN) == (None, [])


def test_endpoints_exchange_datagrams_on_loopback_and_drain_empties_the_socket() -> None:
    a, b = qc.Endpoint(), qc.Endpoint()
    try:
        assert a.host == "127.0.0.1" and a.channel("t").port == a.port
        for seq in (1, 2, 3):
            assert a.send_to((b.host, b.port), qc.encode_quote(TOKEN, seq, _update()))
        got: list[tuple[bytes, tuple[str, int]]] = []
        deadline = time.monotonic() + 5
        while len(got) < 3 and time.monotonic() < deadline:
            got += b.drain()
        assert [qc.decode_quote(d, TOKEN)[0] for d, _ in got] == [1, 2, 3]
        assert all(sender == (a.host, a.port) for _, sender in got)
        assert b.drain() == []
    finally:
        a.close()
        b.close()
        a.close()  # idempotent
