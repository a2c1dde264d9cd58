"""Tests for core.expr: grammar, types, three-valued evaluation, series lookups and clear, located errors."""

from __future__ import annotations

import copy
import pickle
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from core.errors import CoreError, ExprError
from core.expr import (
    Compiled,
    SeriesSpec,
    Vocabulary,
    compile_condition,
    compile_value,
    prev_key,
    series_key,
)
from core.types import Side

NAMES = {
    "x": "num", "y": "num", "z": "num",
    "a": "bool", "b": "bool", "c": "bool",
    "s": "str",
    "signal.direction": "str", "signal.confidence": "num",
    "position.flat": "bool", "market.close": "num", "time.minutes_to_close": "num",
}
SERIES = {
    "sma": SeriesSpec("sma"),
    "rsi": SeriesSpec("rsi", low=2, high=100),
    "bollinger_upper": SeriesSpec("bollinger_upper", arity=2, low=1, high=500),
}
V = Vocabulary(names=NAMES, series=SERIES, prev_names=frozenset({"market.close"}))


def value(text: str, env: dict[str, object]) -> object:
    return compile_value(text, V)(env)


# ---------------------------------------------------------------- values


@pytest.mark.parametrize(("text", "env", "expected"), [
    ("1 + 2 * 3", {}, 7.0),
    ("(1 + 2) * 3", {}, 9.0),
    ("10 - 4 - 3", {}, 3.0),
    ("24 / 4 / 2", {}, 3.0),
    ("2 * 3 + 4 * 5", {}, 26.0),
    ("x * y + z", {"x": 2.0, "y": 3.0, "z": 1.0}, 7.0),
    ("x - y - z", {"x": 10.0, "y": 3.0, "z": 2.0}, 5.0),
    ("x / y * z", {"x": 6.0, "y": 3.0, "z": 5.0}, 10.0),
    ("-x + 5", {"x": 2.0}, 3.0),
    ("- -x", {"x": 2.0}, 2.0),
    ("-x * -2", {"x": 3.0}, 6.0),
    ("-(1 + 2)", {}, -3.0),
    (".5 + 1e1 + 2.5E-1 + 1e+1", {}, 20.75),
    ("x + 1", {}, None),
    ("x + y + z", {"x": 1.0, "z": 1.0}, None),
    ("-x", {"x": None}, None),
    ("x / y", {"x": 1.0, "y": 0.0}, None),
    ("x / 0", {"x": 1.0}, None),
    ("1 / 0", {}, None),
    ("x / y / z", {"x": 1.0, "y": 2.0, "z": 0.0}, None),
    ("x * x", {"x": 1e200}, None),               # overflow to inf is unknown, not inf
    ("1 < x <= 3", {"x": 3.0}, True),
    ("1 < x <= 3", {"x": 1.0}, False),
    ("1 < x <= 3", {}, None),
    ("3 < x < y", {"x": 2.0}, False),            # a False link decides even with y unknown
    ("1 < x < y", {"x": 2.0}, None),
    ("x < y < z", {"x": 1.0, "y": 2.0, "z": 3.0}, True),
    ("x == y == z", {"x": 1.0, "y": 1.0, "z": 2.0}, False),
    ("x == 2", {"x": 2}, True),
    ("x == 2.5", {"x": Decimal("2.5")}, True),
    ("x != 2", {"x": 2.0}, False),
    ("x >= 2", {"x": 2.0}, True),
    ("3 > x", {"x": 2.0}, True),
    ("s == 'abc'", {"s": "abc"}, True),
    ('s != "abc"', {"s": "abd"}, True),
    ("s == 'it\\'s'", {"s": "it's"}, True),
    ('s == "a\\\\b\\""', {"s": 'a\\b"'}, True),
    ("s == \"\"", {"s": ""}, True),
    ("s in ['a', 'b']", {"s": "b"}, True),
    ("s in ['a', 'b']", {"s": "c"}, False),
    ("s not in ['a', 'b',]", {"s": "c"}, True),
    ("s in ['a']", {}, None),
    ("x in [1, 2.5, -3]", {"x": -3.0}, True),
    ("x not in []", {"x": 1.0}, True),
    ("x + 1 in [3]", {"x": 2.0}, True),
    ("true", {}, True),
    ("false", {}, False),
    ("true == false", {}, False),
    ("a == true", {"a": True}, True),
    ("a != b", {"a": True, "b": False}, True),
    ("not a and b", {"a": False, "b": True}, True),     # not binds tighter than and
    ("a or b and c", {"a": True, "b": False, "c": False}, True),  # and binds tighter than or
    ("(a or b) and c", {"a": True, "b": False, "c": False}, False),
    ("not x > 1", {"x": 0.0}, True),                    # comparison binds tighter than not
    ("position.flat and signal.confidence >= 0.7", {"position.flat": True, "signal.confidence": 0.7}, True),
    ("sma(20) > sma(50)", {"sma(20)": 2.0, "sma(50)": 1.0}, True),
    ("sma(20) > sma(50)", {"sma(20)": 2.0}, None),
    ("bollinger_upper(20, 2) - x", {"bollinger_upper(20,2)": 5.0, "x": 1.0}, 4.0),
    ("prev(sma(20))", {"prev:sma(20)": 1.5, "sma(20)": 9.0}, 1.5),
    ("prev(market.close) < market.close", {"prev:market.close": 1.0, "market.close": 2.0}, True),
    ("prev(sma(20))", {"sma(20)": 9.0}, None),
    ("crosses_above(sma(3), sma(12))",
     {"prev:sma(3)": 1.0, "prev:sma(12)": 1.0, "sma(3)": 2.0, "sma(12)": 1.5}, True),
    ("crosses_above(sma(3), sma(12))",
     {"prev:sma(3)": 2.0, "prev:sma(12)": 1.0, "sma(3)": 2.0, "sma(12)": 1.5}, False),
    ("crosses_above(sma(3), sma(12))",
     {"prev:sma(3)": 1.0, "prev:sma(12)": 1.0, "sma(3)": 1.5, "sma(12)": 1.5}, False),
    ("crosses_above(sma(3), sma(12))", {"prev:sma(3)": 1.0, "sma(3)": 2.0, "sma(12)": 1.5}, None),
    ("crosses_above(sma(3), sma(12))", {"prev:sma(3)": 1.0, "prev:sma(12)": 1.0, "sma(3)": 2.0}, None),
    ("crosses_above(rsi(14), 30)", {"prev:rsi(14)": 30.0, "rsi(14)": 35.0}, True),
    ("crosses_above(rsi(14), 30)", {"prev:rsi(14)": 31.0, "rsi(14)": 35.0}, False),
    ("crosses_above(-5, rsi(14))", {"prev:rsi(14)": -6.0, "rsi(14)": -7.0}, False),
    ("crosses_below(-5, rsi(14))", {"prev:rsi(14)": -6.0, "rsi(14)": -4.0}, True),
    ("crosses_below(market.close, 100)", {"prev:market.close": 101.0, "market.close": 99.0}, True),
    ("crosses_below(market.close, 100)", {"prev:market.close": 99.0, "market.close": 98.0}, False),
    ("crosses_below(market.close, 100)", {"market.close": 99.0}, None),
    ("known(x)", {}, False),
    ("known(x)", {"x": 1.0}, True),
    ("known(x / 0)", {"x": 1.0}, False),
    ("known(s)", {"s": "a"}, True),
    ("known(a)", {"a": False}, True),
    ("not known(sma(5))", {}, True),
    ("abs(-3)", {}, 3.0),
    ("abs(x)", {"x": -2.5}, 2.5),
    ("abs(x)", {}, None),
    ("min(x, 2, 3)", {"x": 1.0}, 1.0),
    ("max(x, y)", {"x": 1.0, "y": 4.0}, 4.0),
    ("max(x, y)", {"x": 1.0}, None),
    ("min(1, 2) + max(3, 4)", {}, 5.0),
])
def test_value_of_expression_in_environment_is_expected(text: str, env: dict[str, object],
                                                          expected: object) -> None:
    result = value(text, env)
    assert result == expected and type(result) is type(expected)


def _kleene(v: bool | None) -> int:
    return {False: 0, None: 1, True: 2}[v]


def _unkleene(n: int) -> bool | None:
    return (False, None, True)[n]


TRUTH = (True, False, None)


@pytest.mark.parametrize("p", TRUTH)
@pytest.mark.parametrize("q", TRUTH)
def test_and_or_with_unknown_follow_three_valued_truth_tables(p: bool | None, q: bool | None) -> None:
    env = {"a": p, "b": q}
    assert value("a and b", env) is _unkleene(min(_kleene(p), _kleene(q)))
    assert value("a or b", env) is _unkleene(max(_kleene(p), _kleene(q)))


@pytest.mark.parametrize(("p", "expected"), [(True, False), (False, True), (None, None)])
def test_not_of_unknown_is_unknown_and_negates_otherwise(p: bool | None, expected: bool | None) -> None:
    assert value("not a", {"a": p}) is expected


@pytest.mark.parametrize("p", TRUTH)
@pytest.mark.parametrize("q", TRUTH)
@pytest.mark.parametrize("r", TRUTH)
def test_three_operand_and_or_chains_follow_truth_tables(p: bool | None, q: bool | None,
                                                         r: bool | None) -> None:
    env = {"a": p, "b": q, "c": r}
    ks = [_kleene(p), _kleene(q), _kleene(r)]
    assert value("a and b and c", env) is _unkleene(min(ks))
    assert value("a or b or c", env) is _unkleene(max(ks))


@pytest.mark.parametrize(("text", "env", "expected"), [
    ("a", {"a": True}, True),
    ("a", {"a": None}, False),
    ("a", {}, False),
    ("a or b", {"b": True}, True),
    ("x > 1", {"x": None}, False),
    ("x > 1", {"x": 2.0}, True),
])
def test_holds_is_true_only_for_exactly_true(text: str, env: dict[str, object], expected: bool) -> None:
    held = compile_condition(text, V).holds(env)
    assert held is expected


def test_and_short_circuits_after_false_and_or_after_true() -> None:
    class Counting(dict):  # type: ignore[type-arg]
        def get(self, key: str, default: object = None) -> object:
            self.read.append(key)
            return super().get(key, default)

    env = Counting(a=False, b=True)
    env.read = []  # type: ignore[attr-defined]
    assert compile_condition("a and b", V)(env) is False
    assert compile_condition("b or a", V)(env) is True
    assert env.read == ["a", "b"]  # type: ignore[attr-defined]


# ---------------------------------------------------------------- environment values


@pytest.mark.parametrize(("name", "raw", "expected"), [
    ("x", 2.0, 2.0),
    ("x", 2, 2.0),
    ("x", Decimal("1.5"), 1.5),
    ("x", Fraction(1, 4), 0.25),
    ("x", np.float64(2.5), 2.5),
    ("x", np.int64(3), 3.0),
    ("x", True, None),
    ("x", "1", None),
    ("x", float("nan"), None),
    ("x", float("inf"), None),
    ("x", Decimal("NaN"), None),
    ("x", Decimal("sNaN"), None),
    ("x", Decimal("1e999999"), None),
    ("x", 10 ** 400, None),
    ("x", object(), None),
    ("a", True, True),
    ("a", 1, None),
    ("a", np.bool_(True), None),
    ("a", "true", None),
    ("s", "LONG", "LONG"),
    ("s", Side.BUY, "BUY"),
    ("s", 5, None),
    ("s", b"x", None),
])
def test_environment_value_is_read_as_declared_type_or_unknown(name: str, raw: object,
                                                                expected: object) -> None:
    result = value(name, {name: raw})
    assert result == expected and type(result) is type(expected)


# ---------------------------------------------------------------- what an expression reads


@pytest.mark.parametrize(("text", "names", "keys", "series"), [
    ("x > 1 and a", {"x", "a"}, {"x", "a"}, set()),
    ("sma(20) > bollinger_upper(20, 2)", set(), {"sma(20)", "bollinger_upper(20,2)"},
     {("sma", (20,)), ("bollinger_upper", (20, 2))}),
    ("prev(sma(20)) > 1", set(), {"prev:sma(20)"}, {("sma", (20,))}),
    ("crosses_above(sma(3), sma(12))", set(), {"sma(3)", "sma(12)", "prev:sma(3)", "prev:sma(12)"},
     {("sma", (3,)), ("sma", (12,))}),
    ("crosses_below(market.close, 5)", {"market.close"}, {"market.close", "prev:market.close"}, set()),
    ("prev(market.close) > 1", set(), {"prev:market.close"}, set()),
    ("1 < 2", set(), set(), set()),
])
def test_compiled_lists_names_keys_and_series_it_reads(text: str, names: set[str], keys: set[str],
                                                       series: set[tuple[str, tuple[int, ...]]]) -> None:
    compiled = compile_value(text, V)
    assert (compiled.names, compiled.keys, compiled.series) == (names, keys, series)
    assert compiled.source == text


@pytest.mark.parametrize(("text", "kind"), [
    ("x + 1", "num"), ("a or b", "bool"), ("s", "str"), ("sma(3)", "num"), ("known(s)", "bool"),
    ("crosses_above(sma(3), 1)", "bool"), ("prev(market.close)", "num"), ("'a'", "str"),
])
def test_compile_value_reports_the_expression_type(text: str, kind: str) -> None:
    assert compile_value(text, V).type == kind


@pytest.mark.parametrize(("name", "args", "key"), [
    ("sma", (20,), "sma(20)"), ("bollinger_upper", (20, 2), "bollinger_upper(20,2)"), ("vwap", (), "vwap()"),
])
def test_series_key_joins_arguments_without_spaces(name: str, args: tuple[int, ...], key: str) -> None:
    assert series_key(name, args) == key
    assert prev_key(key) == "prev:" + key


# ---------------------------------------------------------------- errors

NOT_IN_LIST = "crosses_above() takes two operands"


@pytest.mark.parametrize(("text", "fragment", "column"), [
    ('position.flat and __import__("os")', "dunder names are not allowed: '__import__'", 19),
    ("x.__class__", "dunder names are not allowed: '__class__'", 3),
    ("s.__class__.__bases__", "dunder names are not allowed: '__class__'", 3),
    ("import os", "'import' is not allowed: rule expressions cannot import modules", 1),
    ("lambda: 1", "'lambda' is not allowed in a rule expression", 1),
    ("x if a else y", "'if' is not allowed", 3),
    ("x is 1", "'is' is not allowed", 3),
    ("exec('1')", "'exec' is not allowed", 1),
    ("True", "'True' is not allowed: write 'true'", 1),
    ("a == False", "'False' is not allowed: write 'false'", 6),
    ("known(None)", "'None' is not allowed", 7),
    ('open("f")', "unknown function 'open'; functions are: abs, bollinger_upper, crosses_above", 1),
    ("os.system('ls')", "unknown function 'os.system'", 1),
    ("signal.confidance > 0.5", "unknown name 'signal.confidance'; did you mean 'signal.confidence'?", 1),
    ("a and signal.foo", "unknown name 'signal.foo'", 7),
    ("qqqq > 1", "unknown name 'qqqq'; names are: a, b, c", 1),
    ("a AND b", "unexpected 'AND'", 3),
    ("AND", "keywords are lowercase: 'and'", 1),
    ("sma > 1", "'sma' is a function", 1),
    ("market.close(3)", "unknown function 'market.close'", 1),
    ("sma(0) > 1", "sma(0) is out of range: sma() takes 1 integer argument, each from 1 to 10000", 5),
    ("sma(10001) > 1", "from 1 to 10000", 5),
    ("sma(x) > 1", "sma() takes 1 integer argument, each from 1 to 10000, e.g. sma(20); found x", 5),
    ("sma(2.5) > 1", "each from 1 to 10000", 5),
    ("sma(-3) > 1", "each from 1 to 10000", 5),
    ("sma(1e2) > 1", "each from 1 to 10000", 5),
    ("sma((3)) > 1", "each from 1 to 10000", 5),
    ("sma() > 1", "found no argument", 5),
    ("sma(3, 4) > 1", "found too many arguments", 6),
    ("rsi(1) < 30", "rsi(1) is out of range: rsi() takes 1 integer argument, each from 2 to 100", 5),
    ("bollinger_upper(20) > 1", "bollinger_upper() takes 2 integer arguments", 19),
    ("1 +", "unexpected end of expression", 4),
    ("(1 + 2", "unclosed '('", 1),
    ("abs(1", "unclosed '(' of abs()", 4),
    ("sma(3", "unclosed '(' of sma()", 4),
    ('"abc', "unterminated string", 1),
    ("'abc\\", "unterminated string", 1),
    ("a = 1", "unexpected '='", 3),
    ("x ** 2", "unexpected '**'", 3),
    ("x // 2", "unexpected '//'", 3),
    ("a && b", "unexpected '&&'", 3),
    ("!a", "unexpected '!'", 1),
    ("x; x", "unexpected ';'", 2),
    ("x @ y", "unexpected '@'", 3),
    ("`x`", "unexpected '`'", 1),
    ("{1}", "unexpected '{'", 1),
    ("x % 2", "unexpected '%'", 3),
    ("x[0] > 1", "unexpected '['", 2),
    ("x.", "unexpected '.'", 2),
    ("x > 1 )", "unexpected ')'", 7),
    ("1 2", "unexpected '2'", 3),
    ("x é 2", "unexpected 'é'", 3),
    ("", "empty expression", 0),
    (" \t\n", "empty expression", 0),
    ("1e999 > x", "number out of range: '1e999'", 1),
    ("3abc", "malformed number '3abc'", 1),
    ("1.2.3", "malformed number '1.2.3'", 1),
    ("s == 'a\\n'", "unsupported escape '\\n'", 8),
    ("signal.direction > 3", "cannot compare str with num: signal.direction > 3", 18),
    ("a == 1", "cannot compare bool with num: a == 1", 3),
    ("x > 1 == a", "cannot compare num with bool: 1 == a", 7),
    ("s < 'b'", "cannot order str values with '<' (only numbers)", 3),
    ("x + s", "cannot apply '+' to num and str: x + s", 3),
    ("a * 2", "cannot apply '*' to bool and num", 3),
    ("-s", "cannot negate str: -s", 1),
    ("x and a", "'and' needs true/false operands, found num: x", 1),
    ("a or 1", "'or' needs true/false operands, found num: 1", 6),
    ("not x", "'not' needs a true/false operand, found num: x", 5),
    ("s in [1, 2]", "cannot look for a str in a list of num: s in [1, 2]", 3),
    ("x in [1, 'a']", "a list must hold one type, found num and str", 10),
    ("x in [y]", "a list holds only number or string literals, found 'y'", 7),
    ("a in [true]", "a list holds only number or string literals, found 'true'", 7),
    ("x in 3", "expected a list", 6),
    ("x in [1", "unclosed '[' of a list", 6),
    ("x in [1 2]", "unexpected '2'; expected ',' or ']'", 9),
    ("x in [1] == a", "cannot follow a list", 10),
    ("x not 1", "unexpected 'not'", 3),
    ("abs(s)", "abs() takes numbers, found str: s", 5),
    ("abs(1, 2)", "abs() takes 1 argument, got 2", 1),
    ("min(x)", "min() takes 2 or more arguments, got 1", 1),
    ("max(x, a)", "max() takes numbers, found bool: a", 8),
    ("known()", "known() takes 1 argument, got 0", 1),
    ("known(1, 2)", "known() takes 1 argument, got 2", 1),
    ("prev(x) > 1", "prev() takes one operand: a series call (bollinger_upper(…), rsi(…), sma(…)) "
                    "or a series name (market.close); found x", 6),
    ("prev(sma(3) + 1) > 1", "found sma(3) + 1", 6),
    ("prev(1) > 1", "prev() takes one operand", 6),
    ("prev(prev(sma(3))) > 1", "found prev(sma(3))", 6),
    ("prev() > 1", "found nothing", 6),
    ("prev(sma(3), sma(4)) > 1", "found too many operands", 12),
    ("crosses_above(x, 3)", NOT_IN_LIST + ", each a series call", 15),
    ("crosses_above(sma(3))", "found only one", 21),
    ("crosses_above(sma(3), 5 5)", "found 5 5", 23),
    ("crosses_above(sma(3), 'a')", "found 'a'", 23),
    ("crosses_above(1, 2)", "crosses_above() needs at least one series operand", 1),
    ("market.close > 1 and known(sma(0))", "sma(0) is out of range", 32),
])
def test_invalid_expression_raises_expr_error_naming_text_and_column(text: str, fragment: str,
                                                                     column: int) -> None:
    with pytest.raises(ExprError) as caught:
        compile_value(text, V)
    error = caught.value
    assert fragment in error.message
    assert error.column == column
    assert error.text == text
    assert isinstance(error, CoreError) and isinstance(error, ValueError)


@pytest.mark.parametrize(("text", "column"), [
    ("(" * 100 + "x" + ")" * 100, 33),
    ("not " * 40 + "a", 32 * 4 + 1),
    ("abs(" * 40 + "x" + ")" * 40, 32 * 4 + 4),
    ("min(1, " * 40 + "x", 32 * 7 + 4),
    ("-" * 1000 + "(" * 40 + "x" + ")" * 40, 1000 + 33),
])
def test_nesting_beyond_32_levels_raises_expr_error_not_recursion_error(text: str, column: int) -> None:
    with pytest.raises(ExprError, match="nested too deeply") as caught:
        compile_value(text, V)
    assert caught.value.column == column


@pytest.mark.parametrize("text", [
    "(" * 32 + "x" + ")" * 32,
    "not " * 32 + "a",
    "abs(" * 16 + "(" * 16 + "x" + ")" * 32,
])
def test_nesting_of_exactly_32_levels_compiles(text: str) -> None:
    compile_value(text, V)


@pytest.mark.parametrize(("text", "expected"), [
    ("+".join(["x"] * 1000), 1000.0),
    ("-" * 1999 + "x", -1.0),
    (" and ".join(["a"] * 333), True),
    (" or ".join(["b"] * 399) + " or a", True),
    (" < ".join(str(i) for i in range(300)), True),
])
def test_long_flat_expressions_evaluate_without_deep_recursion(text: str, expected: object) -> None:
    assert len(text) <= 2_000
    assert compile_value(text, V)({"x": 1.0, "a": True, "b": False}) == expected


def test_text_of_3000_characters_is_rejected_as_too_long() -> None:
    text = "x + " * 749 + "xxxx"
    with pytest.raises(ExprError, match="too long: 3000 characters") as caught:
        compile_value(text, V)
    assert caught.value.column == 0
    assert len(str(caught.value)) < 400  # the message shows the start of the text, not all of it


def test_text_of_2000_characters_is_accepted() -> None:
    text = "x" + " " * 1998 + "x"
    with pytest.raises(ExprError, match="unexpected 'x'"):  # long, but still parsed
        compile_value(text, V)
    assert compile_value("x" + " " * 1999, V)({"x": 2.0}) == 2.0


@pytest.mark.parametrize(("length", "ok"), [(200, True), (201, False)])
def test_string_literal_is_limited_to_200_characters(length: int, ok: bool) -> None:
    text = "s == '" + "a" * length + "'"
    if ok:
        assert compile_condition(text, V).holds({"s": "a" * length})
    else:
        with pytest.raises(ExprError, match="string longer than 200 characters"):
            compile_condition(text, V)


@pytest.mark.parametrize("text", ["x + 1", "s", "sma(3)"])
def test_compile_condition_rejects_non_bool_expression(text: str) -> None:
    with pytest.raises(ExprError, match="a condition must be true or false"):
        compile_condition(text, V)


@pytest.mark.parametrize("text", [True, None, 3, b"x > 1"])
def test_non_text_expression_raises_expr_error(text: object) -> None:
    with pytest.raises(ExprError, match="an expression must be text"):
        compile_condition(text, V)  # type: ignore[arg-type]


def test_expr_error_str_shows_message_column_and_text() -> None:
    with pytest.raises(ExprError) as caught:
        compile_condition("position.flat and foo > 1", V)
    assert str(caught.value) == "unknown name 'foo'; names are: a, b, c, market.close, position.flat, s, " \
        "signal.confidence, signal.direction, … at column 19 in `position.flat and foo > 1`"


def test_expr_error_pickles_with_text_and_column() -> None:
    error = ExprError("unknown name 'foo'", text="foo > 1", column=1)
    again = pickle.loads(pickle.dumps(error))
    assert (type(again), again.message, again.text, again.column, str(again)) == \
        (ExprError, error.message, error.text, error.column, str(error))


# ---------------------------------------------------------------- vocabulary and compiled values


def test_compiled_does_not_pickle_but_copies_as_itself() -> None:
    compiled = compile_condition("x > 1", V)
    with pytest.raises(TypeError, match="pickle its source text"):
        pickle.dumps(compiled)
    assert copy.copy(compiled) is compiled and copy.deepcopy(compiled) is compiled


def test_vocabulary_keeps_its_own_copy_of_names() -> None:
    names = {"x": "num"}
    vocabulary = Vocabulary(names=names)  # type: ignore[arg-type]
    names["y"] = "num"
    with pytest.raises(ExprError, match="unknown name 'y'"):
        compile_value("y", vocabulary)


@pytest.mark.parametrize(("names", "series", "prev_names"), [
    ({"x": "float"}, {}, frozenset()),
    ({"x y": "num"}, {}, frozenset()),
    ({"and": "bool"}, {}, frozenset()),
    ({"None.x": "bool"}, {}, frozenset()),
    ({"x.__dict__": "bool"}, {}, frozenset()),
    ({}, {"abs": SeriesSpec("abs")}, frozenset()),
    ({}, {"sma": SeriesSpec("ema")}, frozenset()),
    ({}, {"sma": SeriesSpec("sma", low=5, high=1)}, frozenset()),
    ({"s": "str"}, {}, frozenset({"s"})),
])
def test_inconsistent_vocabulary_raises_value_error(names: dict[str, str], series: dict[str, SeriesSpec],
                                                    prev_names: frozenset[str]) -> None:
    with pytest.raises(ValueError):
        Vocabulary(names=names, series=series, prev_names=prev_names)  # type: ignore[arg-type]


def test_series_with_zero_arity_is_looked_up_by_empty_call_key() -> None:
    vocabulary = Vocabulary(names={}, series={"vwap": SeriesSpec("vwap", arity=0)})
    compiled = compile_value("vwap()", vocabulary)
    assert compiled({"vwap()": 3.0}) == 3.0 and compiled.keys == {"vwap()"}


# ---------------------------------------------------------------- properties

EXPRESSIONS = (
    "x + y * z - 1 / x",
    "-x / (y - z)",
    "1 < x <= y < z",
    "x == y != z",
    "a and b or not c",
    "not (a or b) and (c or x > 1)",
    "s in ['a', 'b'] or s not in ['c'] and s == signal.direction",
    "known(x) and known(s) or known(a)",
    "abs(x) + min(x, y, 3) - max(y, z)",
    "crosses_above(sma(3), sma(12)) or crosses_below(market.close, 10)",
    "prev(sma(3)) + prev(market.close) > bollinger_upper(20, 2)",
    "signal.direction == 'LONG' and signal.confidence >= 0.7 and position.flat and rsi(14) < 70",
    "crosses_above(sma(3), sma(12)) and time.minutes_to_close > 15",
    "x in [1, 2, 3] and x / 0 > 1",
    "s",
    "x * x * x * x",
)
COMPILED = tuple(compile_value(text, V) for text in EXPRESSIONS)
ALL_KEYS = sorted(set().union(*(c.keys for c in COMPILED)))
ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.floats(), st.integers(), st.decimals(allow_nan=True, allow_infinity=True),
    st.text(max_size=3), st.sampled_from(["LONG", "a", "b", "c"]), st.fractions(),
    st.just(object()), st.lists(st.integers(), max_size=2),
)
TYPES = {"num": float, "bool": bool, "str": str}


@settings(max_examples=150)
@given(st.dictionaries(st.sampled_from(ALL_KEYS), ANY_VALUE))
def test_evaluation_never_raises_and_returns_unknown_or_declared_type(env: dict[str, object]) -> None:
    for compiled in COMPILED:
        result = compiled(env)
        assert result is None or type(result) is TYPES[compiled.type], (compiled.source, result)
        if compiled.type == "num" and result is not None:
            assert result - result == 0.0  # finite
        assert compiled.holds(env) is (result is True)


GRAMMAR_CHARACTERS = st.sampled_from(list("xyzabs.()[],'\"\\-+*/<>=!&|;@`{}%^~ \t\n0123456789eE_")
                                     + ["and ", "or ", "not ", " in ", "true", "sma(", "prev(",
                                        "crosses_above(", "__", "import", "1e999", "é"])


@settings(max_examples=300)
@given(st.lists(GRAMMAR_CHARACTERS, max_size=30).map("".join) | st.text(max_size=40))
def test_parser_raises_only_expr_error_on_random_text(text: str) -> None:
    try:
        compiled = compile_value(text, V)
    except ExprError as error:
        assert 0 <= error.column <= len(text) + 1
        return
    compiled({})


TOKENS = st.sampled_from([
    "x", "y", "a", "s", "market.close", "1", "2.5", "0", "'a'", "true", "false", "and", "or", "not",
    "in", "[", "]", ",", "(", ")", "+", "-", "*", "/", "<", "<=", "==", "!=", ">", ">=",
    "sma(3)", "sma", "prev", "crosses_above", "abs", "min", "known", "rsi(14)",
])


@settings(max_examples=300)
@given(st.lists(TOKENS, min_size=1, max_size=14).map(" ".join))
def test_parser_raises_only_expr_error_on_random_token_sequences(text: str) -> None:
    try:
        compiled = compile_value(text, V)
    except ExprError:
        return
    result = compiled({"x": 1.0, "y": 0.0, "a": True, "s": "a", "sma(3)": 2.0, "prev:sma(3)": 1.0})
    assert result is None or type(result) is TYPES[compiled.type]


# A reference evaluator over generated trees checks operator semantics and unknown propagation.

LEAVES = st.sampled_from(["x", "y", "z", "0", "1", "2.5"])


def _arith_tree(depth: int) -> st.SearchStrategy[tuple]:
    if depth == 0:
        return LEAVES
    sub = _arith_tree(depth - 1)
    return st.one_of(LEAVES, st.tuples(st.sampled_from(["+", "-", "*", "/"]), sub, sub),
                     st.tuples(st.just("neg"), sub))


def _bool_tree(depth: int) -> st.SearchStrategy[tuple]:
    compare = st.tuples(st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), _arith_tree(2), _arith_tree(2))
    if depth == 0:
        return st.one_of(st.sampled_from(["a", "b", "true", "false"]), compare)
    sub = _bool_tree(depth - 1)
    return st.one_of(compare, st.tuples(st.sampled_from(["and", "or"]), sub, sub),
                     st.tuples(st.just("not"), sub))


def _render(tree: object) -> str:
    if isinstance(tree, str):
        return tree
    op, *args = tree  # type: ignore[misc]
    if op == "neg":
        return f"-({_render(args[0])})"
    if op == "not":
        return f"not ({_render(args[0])})"
    return f"({_render(args[0])}) {op} ({_render(args[1])})"


def _reference(tree: object, env: dict[str, object]) -> object:
    if isinstance(tree, str):
        if tree in ("true", "false"):
            return tree == "true"
        if tree[0].isdigit():
            return float(tree)
        return env.get(tree)
    op, *args = tree  # type: ignore[misc]
    values = [_reference(arg, env) for arg in args]
    if op == "not":
        return None if values[0] is None else not values[0]
    if op in ("and", "or"):
        pick = min if op == "and" else max
        return _unkleene(pick(_kleene(v) for v in values))  # type: ignore[arg-type]
    if None in values:
        return None
    if op == "neg":
        return -values[0]  # type: ignore[operator]
    p, q = values
    if op == "/" and q == 0:
        return None
    result = {"+": lambda: p + q, "-": lambda: p - q, "*": lambda: p * q, "/": lambda: p / q,
              "<": lambda: p < q, "<=": lambda: p <= q, ">": lambda: p > q, ">=": lambda: p >= q,
              "==": lambda: p == q, "!=": lambda: p != q}[op]()  # type: ignore[operator]
    return result


SMALL = st.one_of(st.none(), st.integers(-3, 3).map(float))


@settings(max_examples=200)
@given(_bool_tree(2), st.fixed_dictionaries({"x": SMALL, "y": SMALL, "z": SMALL,
                                             "a": st.sampled_from(TRUTH), "b": st.sampled_from(TRUTH)}))
def test_evaluation_matches_reference_three_valued_semantics(tree: object, env: dict[str, object]) -> None:
    assert compile_condition(_render(tree), V)(env) == _reference(tree, env)


def test_compiled_is_a_compiled_instance_with_declared_fields() -> None:
    compiled = compile_condition("a", V)
    assert isinstance(compiled, Compiled)
    assert {"source", "type", "names", "keys", "series"} <= set(Compiled.__dataclass_fields__)
