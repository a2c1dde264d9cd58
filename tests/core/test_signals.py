"""Tests for core.signals: raw input -> PredictionSignal or a Rejection with its reason, payloads, lines, Seen, demo."""

from __future__ import annotations

import json
import pickle
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from core.errors import ConfigError
from core.signals import (
    FUTURE_SKEW_S,
    NS_PER_S,
    SEEN_LIMIT,
    Chunk,
    Line,
    Payload,
    Reason,
    Rejection,
    Seen,
    demo_signal,
    intake,
    normalize,
    parse_lines,
    parse_payload,
)
from messages import Direction, PredictionSignal

D = Decimal
SYMBOLS = ("AAPL", "MSFT", "BRK.B")
NOW_S = 1_700_000_000
NOW = NOW_S * NS_PER_S
MAX_AGE_S = 60.0
GOOD: dict[str, Any] = {"id": "p-1", "symbol": "AAPL", "direction": "LONG", "confidence": 0.8}


def _judge(raw: object, *, seen: Any = frozenset(), where: str = "") -> PredictionSignal | Rejection:
    return normalize(raw, source="http", symbols=SYMBOLS, now_ns=NOW, max_age_s=MAX_AGE_S, seen=seen, where=where)


def _text(**changes: Any) -> str:
    """Return GOOD as JSON text with `changes` applied (a value of ... removes the key)."""
    obj = {**GOOD, **changes}
    return json.dumps({k: v for k, v in obj.items() if v is not ...})


# --- rejections ----------------------------------------------------------------------------------

REJECTED = [
    # (raw input, reason, fragment of the text)
    ("{", Reason.MALFORMED, "not JSON"),
    ("", Reason.MALFORMED, "not JSON"),
    (b"\xff\xfe{}", Reason.MALFORMED, "not UTF-8"),
    ('[{"id": 1}]', Reason.MALFORMED, "a list: expected a JSON object"),
    ('"AAPL LONG"', Reason.MALFORMED, "a string: expected a JSON object"),
    ("42", Reason.MALFORMED, "a number: expected a JSON object"),
    (["AAPL"], Reason.MALFORMED, "expected a JSON object"),
    (None, Reason.MALFORMED, "null: expected a JSON object"),
    ("[" * 100_000, Reason.MALFORMED, "expected a JSON object"),
    (_text(symbol=...), Reason.MISSING_FIELD, "symbol is missing: expected a traded symbol"),
    (_text(symbol=None), Reason.MISSING_FIELD, "symbol is missing"),
    (_text(id=...), Reason.MISSING_FIELD, "id is missing: expected a non-empty string or integer"),
    (_text(direction=...), Reason.MISSING_FIELD, 'direction is missing: expected one of "LONG", "SHORT", "FLAT"'),
    (_text(confidence=...), Reason.MISSING_FIELD, "confidence is missing: expected a number in [0, 1]"),
    (_text(symbol=7), Reason.WRONG_TYPE, "symbol = 7: expected a string, not a number"),
    (_text(id=True), Reason.WRONG_TYPE, "id = true: expected a non-empty string or integer"),
    (_text(id=1.5), Reason.WRONG_TYPE, "id = 1.5: expected a non-empty string or integer"),
    (_text(id={"n": 1}), Reason.WRONG_TYPE, "not an object"),
    (_text(direction=1), Reason.WRONG_TYPE, "direction = 1: expected one of"),
    (_text(confidence="0.8"), Reason.WRONG_TYPE, 'confidence = "0.8": expected a number in [0, 1], not a string'),
    (_text(confidence=True), Reason.WRONG_TYPE, "confidence = true: expected a number in [0, 1], not a boolean"),
    (_text(confidence=[0.8]), Reason.WRONG_TYPE, "not a list"),
    (_text(horizon_s=1.5), Reason.WRONG_TYPE, "horizon_s = 1.5: expected an integer number of seconds"),
    (_text(horizon_s="300"), Reason.WRONG_TYPE, "horizon_s"),
    (_text(reference_price=False), Reason.WRONG_TYPE, "reference_price = false: expected a price > 0"),
    (_text(ts=[1]), Reason.WRONG_TYPE, "ts = [1]: expected epoch seconds or an ISO-8601 time"),
    (_text(confidence=1.7), Reason.BAD_VALUE, "confidence = 1.7: expected a number in [0, 1]"),
    (_text(confidence=-0.1), Reason.BAD_VALUE, "confidence = -0.1: expected a number in [0, 1]"),
    ('{"id": 1, "symbol": "AAPL", "direction": "LONG", "confidence": NaN}', Reason.BAD_VALUE,
     "confidence = NaN: expected a number in [0, 1] (a finite number)"),
    ('{"id": 1, "symbol": "AAPL", "direction": "LONG", "confidence": Infinity}', Reason.BAD_VALUE,
     "confidence = Infinity"),
    ('{"id": 1, "symbol": "AAPL", "direction": "LONG", "confidence": 0.5, "reference_price": -Infinity}',
     Reason.BAD_VALUE, "reference_price = -Infinity"),
    ({**GOOD, "confidence": float("nan")}, Reason.BAD_VALUE, "confidence = nan"),
    ({**GOOD, "reference_price": float("inf")}, Reason.BAD_VALUE, "reference_price = inf"),
    (_text(reference_price=0), Reason.BAD_VALUE, "reference_price = 0: expected a price > 0"),
    (_text(horizon_s=-5), Reason.BAD_VALUE, "horizon_s = -5: expected an integer number of seconds in [0,"),
    (_text(direction="sideways"), Reason.BAD_VALUE, 'direction = "sideways": expected one of "LONG", "SHORT"'),
    (_text(id=""), Reason.BAD_VALUE, 'id = "": expected a non-empty string'),
    (_text(id="x" * 201), Reason.BAD_VALUE, "at most 200 characters"),
    (_text(symbol="  "), Reason.BAD_VALUE, "symbol"),
    (_text(ts="yesterday"), Reason.BAD_VALUE, 'ts = "yesterday": expected epoch seconds or an ISO-8601 time'),
    (_text(ts="2023-11-14T22:13:20"), Reason.BAD_VALUE, "has no UTC offset"),
    (_text(ts=NOW_S * 1000), Reason.BAD_VALUE, "milliseconds?"),
    (_text(ts=-1), Reason.BAD_VALUE, "between 1970 and year 5000"),
    (_text(expires=NOW_S - 100, ts=NOW_S - 10), Reason.BAD_VALUE, "expected a time after ts"),
    (_text(symbol="TSLA"), Reason.UNKNOWN_SYMBOL, 'symbol = "TSLA": expected a traded symbol (AAPL, BRK.B, MSFT)'),
    (_text(ts=NOW_S - 61), Reason.STALE, f"made 61 s ago; expected at most {MAX_AGE_S:g} s"),
    (_text(ts="2023-11-14T21:13:20Z"), Reason.STALE, "made 3600 s ago"),
    (_text(ts=NOW_S + FUTURE_SKEW_S + 1), Reason.FUTURE, "6.0 s in the future; expected at most 5 s ahead"),
    (_text(ts=NOW_S - 30, horizon_s=20), Reason.EXPIRED, "expires 10 s ago"),
    (_text(expires=NOW_S), Reason.EXPIRED, "expires"),
    (_text(expires="2023-11-14T22:13:19+00:00", ts=NOW_S - 5), Reason.EXPIRED, "expires 1.0 s ago"),
]


@pytest.mark.parametrize(("raw", "reason", "fragment"), REJECTED)
def test_normalize_rejects_bad_input_with_reason_and_field_text(raw: object, reason: Reason, fragment: str) -> None:
    result = _judge(raw)

    assert isinstance(result, Rejection), result
    assert result.reason is reason
    assert fragment in result.text
    assert result.source == "http"


def test_normalize_rejection_carries_id_symbol_and_raw_excerpt() -> None:
    raw = _text(confidence=1.7, note="x" * 500)

    result = _judge(raw, where="line 7")

    assert isinstance(result, Rejection)
    assert result.text.startswith("line 7: confidence = 1.7")
    assert (result.source_id, result.symbol) == ("p-1", "AAPL")
    assert result.raw.startswith('{"id": "p-1"') and result.raw.endswith("…") and len(result.raw) == 200


@pytest.mark.parametrize("bad_id", ["p-1\n2099-01-01 | CRITICAL | forged line", "p\r1", "p\x1b[31m1", "p\u20281"])
def test_normalize_rejects_an_id_with_control_characters_and_reports_it_escaped(bad_id: str) -> None:
    raw = json.dumps({"id": bad_id, "symbol": "AAPL", "direction": "LONG", "confidence": 0.8, "ts": NOW_S})

    result = _judge(raw)

    assert isinstance(result, Rejection) and result.reason is Reason.BAD_VALUE
    assert "without control characters" in result.text
    assert result.source_id == ""  # never taken as the id
    for shown in (result.text, result.raw):
        assert shown.isprintable(), shown


def test_rejection_excerpt_of_a_raw_line_escapes_its_line_breaks() -> None:
    result = _judge('{"id": "p-1",\n"oops"}')

    assert isinstance(result, Rejection) and result.reason is Reason.MALFORMED
    assert result.raw == '{"id": "p-1",\\n"oops"}'


def test_normalize_rejects_a_seen_id_as_duplicate() -> None:
    result = _judge(_text(), seen={("http", "p-1")})

    assert isinstance(result, Rejection) and result.reason is Reason.DUPLICATE
    assert 'id = "p-1": already received from http' in result.text


def test_normalize_same_id_from_another_source_is_not_a_duplicate() -> None:
    assert isinstance(_judge(_text(), seen={("file", "p-1")}), PredictionSignal)


# --- acceptance ----------------------------------------------------------------------------------

ACCEPTED = [
    # (changes to GOOD, expected fields of the PredictionSignal)
    ({}, dict(symbol="AAPL", direction=Direction.LONG, confidence=D("0.8"), horizon_s=0, expires_ns=0,
              source="http", source_id="p-1", reference_price=None, created_ns=NOW, ts_ns=NOW)),
    (dict(symbol=" aapl ", direction="bullish", id=17), dict(symbol="AAPL", direction=Direction.LONG, source_id="17")),
    (dict(symbol="brk.b", direction="Bearish"), dict(symbol="BRK.B", direction=Direction.SHORT)),
    (dict(direction="buy"), dict(direction=Direction.LONG)),
    (dict(direction="UP"), dict(direction=Direction.LONG)),
    (dict(direction="sell"), dict(direction=Direction.SHORT)),
    (dict(direction="down"), dict(direction=Direction.SHORT)),
    (dict(direction="short"), dict(direction=Direction.SHORT)),
    (dict(direction="neutral"), dict(direction=Direction.FLAT)),
    (dict(direction="flat"), dict(direction=Direction.FLAT)),
    (dict(confidence=0), dict(confidence=D(0))),
    (dict(confidence=1), dict(confidence=D(1))),
    (dict(confidence=0.123456789012345678), dict(confidence=D("0.12345678901234568"))),
    (dict(ts=NOW_S - 30, horizon_s=300), dict(created_ns=NOW - 30 * NS_PER_S, horizon_s=300,
                                              expires_ns=NOW + 270 * NS_PER_S)),
    (dict(ts=NOW_S - 60), dict(created_ns=NOW - 60 * NS_PER_S)),   # exactly max_age_s old
    (dict(ts=NOW_S + FUTURE_SKEW_S), dict(created_ns=NOW + FUTURE_SKEW_S * NS_PER_S)),
    (dict(ts="2023-11-14T22:13:10.5Z"), dict(created_ns=NOW - 9_500_000_000)),
    (dict(ts="2023-11-14T17:13:10-05:00"), dict(created_ns=NOW - 10 * NS_PER_S)),
    (dict(horizon_s=300.0), dict(horizon_s=300, expires_ns=NOW + 300 * NS_PER_S)),
    (dict(horizon_s=0), dict(horizon_s=0, expires_ns=0)),
    (dict(expires=NOW_S + 100, horizon_s=300), dict(expires_ns=NOW + 100 * NS_PER_S, horizon_s=300)),
    (dict(expires="2023-11-14T22:14:20Z"), dict(expires_ns=NOW + 60 * NS_PER_S)),
    (dict(reference_price=189.25), dict(reference_price=D("189.25"))),
    (dict(reference_price=200), dict(reference_price=D(200))),
    (dict(extra={"anything": [1, 2]}, model="v3"), dict(source_id="p-1")),
]


@pytest.mark.parametrize(("changes", "expected"), ACCEPTED)
def test_normalize_accepts_valid_input_with_exact_fields(changes: dict[str, Any], expected: dict[str, Any]) -> None:
    result = _judge(_text(**changes))

    assert isinstance(result, PredictionSignal), result
    assert {name: getattr(result, name) for name in expected} == expected


def test_normalize_keeps_decimal_digits_from_the_json_text() -> None:
    result = _judge('{"id": "a", "symbol": "AAPL", "direction": "LONG", "confidence": 0.10, '
                    '"reference_price": 123.4500000000000000001}')

    assert isinstance(result, PredictionSignal)
    assert str(result.confidence) == "0.10"
    assert result.reference_price == D("123.4500000000000000001")


def test_normalize_accepts_already_parsed_object_and_bytes() -> None:
    assert isinstance(_judge(dict(GOOD)), PredictionSignal)
    assert isinstance(_judge(_text().encode()), PredictionSignal)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.decimals(allow_nan=True, allow_infinity=True),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
FIELD_VALUES = JSONISH | st.sampled_from(["AAPL", "msft", "LONG", "bearish", "2023-11-14T22:13:10Z", "x", ""])


@settings(max_examples=150)
@given(st.dictionaries(st.sampled_from(["id", "symbol", "direction", "confidence", "ts", "horizon_s", "expires",
                                        "reference_price", "other"]), FIELD_VALUES, max_size=9))
def test_normalize_never_raises_on_jsonlike_objects(obj: dict[str, Any]) -> None:
    result = _judge(obj)

    assert isinstance(result, (PredictionSignal, Rejection))
    if isinstance(result, PredictionSignal):
        assert D(0) <= result.confidence <= D(1) and result.symbol in SYMBOLS


@settings(max_examples=100)
@given(JSONISH | st.text(max_size=40) | st.binary(max_size=40))
def test_normalize_never_raises_on_arbitrary_values(raw: object) -> None:
    assert isinstance(_judge(raw), (PredictionSignal, Rejection))


# --- intake and Seen -----------------------------------------------------------------------------


def test_intake_judges_each_item_alone_and_rejects_a_repeat_within_the_batch() -> None:
    items = [("item 1", _text(id="a")), ("item 2", "{oops"), ("item 3", _text(id="a")), ("item 4", _text(id="b"))]

    seen, results = intake(items, Seen(), source="http", symbols=SYMBOLS, now_ns=NOW, max_age_s=MAX_AGE_S)

    assert [type(r).__name__ for r in results] == ["PredictionSignal", "Rejection", "Rejection", "PredictionSignal"]
    assert [r.reason for r in results if isinstance(r, Rejection)] == [Reason.MALFORMED, Reason.DUPLICATE]
    assert results[1].text.startswith("item 2: ")
    assert seen.keys == (("http", "a"), ("http", "b"))


def test_intake_rejects_ids_accepted_in_an_earlier_batch() -> None:
    seen, _ = intake([("", _text(id="a"))], Seen(), source="file", symbols=SYMBOLS, now_ns=NOW, max_age_s=60)

    again, results = intake([("line 9", _text(id="a"))], seen, source="file", symbols=SYMBOLS, now_ns=NOW,
                            max_age_s=60)

    assert isinstance(results[0], Rejection) and results[0].reason is Reason.DUPLICATE
    assert again is seen


def test_seen_keeps_only_the_newest_limit_keys() -> None:
    seen = Seen(limit=3).add_all([("s", "1"), ("s", "2")]).add_all([("s", "2"), ("s", "3"), ("s", "4")])

    assert seen.keys == (("s", "2"), ("s", "3"), ("s", "4"))
    assert ("s", "1") not in seen and ("s", "4") in seen and len(seen) == 3


def test_seen_default_limit_and_invalid_limit() -> None:
    assert Seen().limit == SEEN_LIMIT
    with pytest.raises(ConfigError):
        Seen(limit=0)


@settings(max_examples=50)
@given(st.lists(st.tuples(st.sampled_from(["http", "file"]), st.text(max_size=3)), max_size=30),
       st.integers(min_value=1, max_value=10))
def test_seen_survives_pickling_with_the_same_members(keys: list[tuple[str, str]], limit: int) -> None:
    seen = Seen(limit=limit).add_all(keys)

    back = pickle.loads(pickle.dumps(seen))

    assert back == seen and back.limit == limit
    assert all((k in back) == (k in seen) for k in keys)
    assert len(back) <= limit


# --- payloads and lines --------------------------------------------------------------------------

PAYLOADS = [
    (b'[{"id": 1}, {"id": 2}]', Payload(items=({"id": 1}, {"id": 2}))),
    (b'{"signals": [{"id": 1}], "cursor": "c-88"}', Payload(items=({"id": 1},), cursor="c-88")),
    (b'{"signals": [], "cursor": 89}', Payload(cursor="89")),
    (b'{"signals": [], "cursor": null}', Payload()),
    (b'{"signals": [3, "x"]}', Payload(items=(3, "x"))),
    (b"", Payload()),
    (b"  \n", Payload()),
]


@pytest.mark.parametrize(("body", "expected"), PAYLOADS)
def test_parse_payload_takes_apart_list_and_object_bodies(body: bytes, expected: Payload) -> None:
    assert parse_payload(body) == expected


BAD_PAYLOADS = [
    (b"<html>oops</html>", "body is not JSON"),
    (b"\xff\xff", "body is not UTF-8"),
    (b'{"data": []}', "body.signals is missing: expected a JSON list of signals or an object"),
    (b'{"signals": {"id": 1}}', "body.signals is"),
    (b'{"signals": [], "cursor": [1]}', "body.cursor = [1]: expected a string"),
    (b'{"signals": [], "cursor": true}', "body.cursor = true"),
    (b'"signals"', "body is a string"),
    (b"17", "body is a number"),
]


@pytest.mark.parametrize(("body", "fragment"), BAD_PAYLOADS)
def test_parse_payload_rejects_a_body_of_the_wrong_shape_as_malformed(body: bytes, fragment: str) -> None:
    result = parse_payload(body)

    assert isinstance(result, Rejection) and result.reason is Reason.MALFORMED
    assert fragment in result.text
    assert result.raw


def test_parse_payload_items_keep_decimals_and_nan_for_field_checks() -> None:
    payload = parse_payload(b'[{"id": 1, "symbol": "AAPL", "direction": "LONG", "confidence": NaN}]')

    assert isinstance(payload, Payload)
    result = _judge(payload.items[0])
    assert isinstance(result, Rejection) and result.reason is Reason.BAD_VALUE


LINES = [
    # (data, keyword arguments, expected chunk)
    (b"a\n\nb\n", {}, Chunk(lines=(Line(number=1, data=b"a"), Line(number=3, data=b"b")), consumed=5, next_line=4)),
    (b"a\nb", {}, Chunk(lines=(Line(number=1, data=b"a"),), consumed=2, next_line=2)),
    (b"a\nb", {"final": True}, Chunk(lines=(Line(number=1, data=b"a"), Line(number=2, data=b"b")),
                                     consumed=3, next_line=3)),
    (b"a\nb\nc\n", {"limit": 2, "first_line": 10},
     Chunk(lines=(Line(number=10, data=b"a"), Line(number=11, data=b"b")), consumed=4, next_line=12)),
    (b"  \n\r\n", {}, Chunk(consumed=5, next_line=3)),
    (b"partial", {}, Chunk(consumed=0, next_line=1)),
    ("é\n", {}, Chunk(lines=(Line(number=1, data="é".encode()),), consumed=3, next_line=2)),
]


@pytest.mark.parametrize(("data", "kwargs", "expected"), LINES)
def test_parse_lines_splits_complete_lines_and_counts_empty_ones(data: bytes | str, kwargs: dict[str, Any],
                                                                 expected: Chunk) -> None:
    assert parse_lines(data, **kwargs) == expected


@settings(max_examples=100)
@given(st.lists(st.sampled_from([b"x", b"yy", b"", b" ", b"{}"]), max_size=12), st.booleans())
def test_parse_lines_consumes_exactly_what_it_numbers(parts: list[bytes], trailing: bool) -> None:
    data = b"\n".join(parts) + (b"\n" if trailing else b"")

    chunk = parse_lines(data)

    assert data[:chunk.consumed].count(b"\n") == chunk.next_line - 1
    assert chunk.consumed == len(data) or b"\n" not in data[chunk.consumed:]


# --- demo ----------------------------------------------------------------------------------------


def test_demo_signal_is_a_pure_function_of_seed_and_n() -> None:
    first = demo_signal(7, 17, SYMBOLS, NOW)
    again = demo_signal(7, 17, SYMBOLS, NOW + 5)

    assert (first.symbol, first.direction, first.confidence) == (again.symbol, again.direction, again.confidence)
    assert (first.source, first.source_id, first.horizon_s) == ("demo", "demo-17", 300)
    assert (first.created_ns, first.expires_ns, first.ts_ns) == (NOW, NOW + 300 * NS_PER_S, NOW)
    others = [demo_signal(8, 17, SYMBOLS, NOW), demo_signal(7, 18, SYMBOLS, NOW)]
    assert any((o.symbol, o.direction, o.confidence) != (first.symbol, first.direction, first.confidence)
               for o in others)


def test_demo_signals_follow_the_documented_distribution() -> None:
    signals = [demo_signal(3, n, SYMBOLS, NOW) for n in range(1, 2001)]
    share = {d: sum(s.direction is d for s in signals) / len(signals) for d in Direction}

    assert abs(share[Direction.LONG] - 0.45) < 0.04
    assert abs(share[Direction.SHORT] - 0.35) < 0.04
    assert abs(share[Direction.FLAT] - 0.20) < 0.04
    assert {s.symbol for s in signals} == set(SYMBOLS)
    assert all(D("0.50") <= s.confidence <= D("0.95") and s.confidence == s.confidence.quantize(D("0.01"))
               for s in signals)


def test_demo_signal_without_symbols_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        demo_signal(7, 1, (), NOW)
