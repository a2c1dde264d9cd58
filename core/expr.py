"""The rule expression language: a hand-written tokenizer and parser, type-checked, compiled to closures."""

from __future__ import annotations

import difflib
import math
import numbers
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Final, Literal, NoReturn

from core.errors import ExprError

ValueType = Literal["num", "bool", "str"]
Evaluator = Callable[[Mapping[str, object]], object]

MAX_TEXT: Final = 2_000
MAX_DEPTH: Final = 32
MAX_STRING: Final = 200
_VALUE_TYPES: Final = frozenset({"num", "bool", "str"})
_BUILTINS: Final = ("abs", "crosses_above", "crosses_below", "known", "max", "min", "prev")
_KEYWORDS: Final = frozenset({"and", "or", "not", "in", "true", "false"})
_NOT_ALLOWED: Final[Mapping[str, str]] = {
    "import": "'import' is not allowed: rule expressions cannot import modules",
    "from": "'from' is not allowed: rule expressions cannot import modules",
    "True": "'True' is not allowed: write 'true'",
    "False": "'False' is not allowed: write 'false'",
    "None": "'None' is not allowed: test for a missing value with known(x)",
    "is": "'is' is not allowed: compare with '==' or '!='",
    "if": "'if' is not allowed in a rule expression: combine conditions with 'and', 'or', 'not'",
    "else": "'else' is not allowed in a rule expression: combine conditions with 'and', 'or', 'not'",
    "elif": "'elif' is not allowed in a rule expression: combine conditions with 'and', 'or', 'not'",
    **{word: f"'{word}' is not allowed in a rule expression" for word in (
        "lambda", "def", "class", "for", "while", "with", "yield", "await", "async", "exec", "eval",
        "return", "del", "global", "nonlocal", "assert", "try", "except", "finally", "raise", "pass",
        "break", "continue", "as")},
}
_BAD_OPERATORS: Final[Mapping[str, str]] = {
    "**": "unexpected '**': there is no power operator",
    "//": "unexpected '//': divide with '/'",
    "&&": "unexpected '&&': write 'and'",
    "||": "unexpected '||': write 'or'",
    "=": "unexpected '=': compare with '=='",
    "!": "unexpected '!': write 'not'",
    "&": "unexpected '&': write 'and'",
    "|": "unexpected '|': write 'or'",
}
_OPERATORS: Final = ("==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "(", ")", "[", "]", ",")
_COMPARE: Final[Mapping[str, Callable[[object, object], bool]]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}
_ORDERING: Final = frozenset({"<", "<=", ">", ">="})


def _in(value: object, members: object) -> bool:
    return value in members  # type: ignore[operator]


def _not_in(value: object, members: object) -> bool:
    return value not in members  # type: ignore[operator]

_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*", re.ASCII)
_NUMBER_RE: Final = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_NUMBER_TAIL_RE: Final = re.compile(r"[A-Za-z0-9_.]*", re.ASCII)
_WHITESPACE: Final = " \t\r\n"


def _dunder(segment: str) -> bool:
    return len(segment) >= 2 and segment.startswith("__") and segment.endswith("__")


def _unreachable(name: str) -> bool:
    segments = name.split(".")
    return segments[0] in _NOT_ALLOWED or any(_dunder(segment) for segment in segments)


@dataclass(frozen=True, slots=True)
class SeriesSpec:
    """A caller-supplied series function: `arity` integer arguments, each in [low, high]."""

    name: str
    arity: int = 1
    low: int = 1
    high: int = 10_000


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """What expressions may read: names with their types, series functions, names usable in prev()."""

    names: Mapping[str, ValueType]
    series: Mapping[str, SeriesSpec] = field(default_factory=lambda: MappingProxyType({}))
    prev_names: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name, kind in self.names.items():
            if not _NAME_RE.fullmatch(name) or name in _KEYWORDS or _unreachable(name):
                raise ValueError(f"vocabulary name {name!r} is not a dotted identifier an expression can use")
            if kind not in _VALUE_TYPES:
                raise ValueError(f"vocabulary name {name!r} has type {kind!r}, not num, bool or str")
        for name, spec in self.series.items():
            if "." in name or not _NAME_RE.fullmatch(name) or name in _BUILTINS or name in _KEYWORDS \
                    or _unreachable(name):
                raise ValueError(f"series function {name!r} is not a plain identifier free for use")
            if spec.name != name or spec.arity < 0 or spec.low > spec.high:
                raise ValueError(f"series function {name!r} has an inconsistent spec {spec!r}")
        for name in self.prev_names:
            if not _NAME_RE.fullmatch(name) or self.names.get(name, "num") != "num":
                raise ValueError(f"prev name {name!r} must be a dotted identifier of type num")
        # frozen copies: a caller mutating its dict later must not change compiled rules' meaning
        object.__setattr__(self, "names", MappingProxyType(dict(self.names)))
        object.__setattr__(self, "series", MappingProxyType(dict(self.series)))
        object.__setattr__(self, "prev_names", frozenset(self.prev_names))


@dataclass(frozen=True, slots=True, eq=False)
class Compiled:
    """A checked expression compiled to closures; call it on an environment to evaluate it.

    It does not pickle (closures do not): pickle `source` and compile it again.
    """

    source: str
    type: ValueType
    names: frozenset[str]
    keys: frozenset[str]
    series: frozenset[tuple[str, tuple[int, ...]]]
    evaluate: Evaluator = field(repr=False)

    def __call__(self, env: Mapping[str, object]) -> object:
        """Return the value in `env`: a float, bool or str, or None when unknown."""
        return self.evaluate(env)

    def holds(self, env: Mapping[str, object]) -> bool:
        """Return True iff the expression is exactly True in `env` (unknown does not hold)."""
        return self.evaluate(env) is True

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Compiled expression does not pickle (it holds closures): "
                        "pickle its source text and compile it again")

    def __copy__(self) -> Compiled:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Compiled:
        return self


def series_key(name: str, args: tuple[int, ...]) -> str:
    """Return the environment key of a series call: "sma(20)", "bollinger_upper(20,2)"."""
    return f"{name}({','.join(str(a) for a in args)})"


def prev_key(key: str) -> str:
    """Return the environment key of the previous bar's value of `key`."""
    return "prev:" + key


def compile_value(text: str, vocabulary: Vocabulary) -> Compiled:
    """Parse, check and compile `text` (any type); raise ExprError naming the offending text."""
    return _Parser(text, vocabulary).compile()


def compile_condition(text: str, vocabulary: Vocabulary) -> Compiled:
    """Compile `text` as a condition: like compile_value, but its type must be bool."""
    compiled = compile_value(text, vocabulary)
    if compiled.type != "bool":
        raise ExprError(f"a condition must be true or false, but this expression is a {compiled.type}",
                        text=text)
    return compiled


# ---------------------------------------------------------------- reading the environment


def _as_num(value: object) -> float | None:
    """Return `value` as a finite float, or None when it is not a usable number (bools are not)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        if isinstance(value, Decimal):
            if not value.is_finite():  # float() raises on a signalling NaN
                return None
            number = float(value)
        elif isinstance(value, numbers.Real):  # int, numpy scalars, Fraction
            number = float(value)
        else:
            return None
    except (ArithmeticError, ValueError, TypeError):
        return None
    return number if number - number == 0.0 else None


def _read_num(key: str) -> Evaluator:
    def read(env: Mapping[str, object]) -> object:
        value = env.get(key)
        if type(value) is float:
            return value if value - value == 0.0 else None  # NaN and ±inf are unknown
        return _as_num(value)
    return read


def _read_bool(key: str) -> Evaluator:
    def read(env: Mapping[str, object]) -> object:
        value = env.get(key)
        return value if value is True or value is False else None
    return read


def _read_str(key: str) -> Evaluator:
    def read(env: Mapping[str, object]) -> object:
        value = env.get(key)
        if type(value) is str:
            return value
        return str.__str__(value) if isinstance(value, str) else None  # str enums read as their value
    return read


_READERS: Final[Mapping[str, Callable[[str], Evaluator]]] = {
    "num": _read_num, "bool": _read_bool, "str": _read_str}


def _constant(value: object) -> Evaluator:
    return lambda env: value


# ---------------------------------------------------------------- closures


def _finite(number: float) -> float | None:
    return number if number - number == 0.0 else None


def _arith_value(op: str, a: float, b: float) -> float | None:
    if op == "+":
        return _finite(a + b)
    if op == "-":
        return _finite(a - b)
    if op == "*":
        return _finite(a * b)
    return None if b == 0.0 else _finite(a / b)


def _arith2(op: str, fa: Evaluator, fb: Evaluator, b_const: float | None, b_is_const: bool) -> Evaluator:
    if b_is_const:
        b = b_const
        if b is None or (op == "/" and b == 0.0):
            return _constant(None)
        if op == "+":
            def add_c(env: Mapping[str, object]) -> object:
                a = fa(env)
                if a is None:
                    return None
                r = a + b
                return r if r - r == 0.0 else None
            return add_c
        if op == "-":
            def sub_c(env: Mapping[str, object]) -> object:
                a = fa(env)
                if a is None:
                    return None
                r = a - b
                return r if r - r == 0.0 else None
            return sub_c
        if op == "*":
            def mul_c(env: Mapping[str, object]) -> object:
                a = fa(env)
                if a is None:
                    return None
                r = a * b
                return r if r - r == 0.0 else None
            return mul_c

        def div_c(env: Mapping[str, object]) -> object:
            a = fa(env)
            if a is None:
                return None
            r = a / b
            return r if r - r == 0.0 else None
        return div_c

    def arith(env: Mapping[str, object]) -> object:
        a = fa(env)
        if a is None:
            return None
        b = fb(env)
        if b is None:
            return None
        return _arith_value(op, a, b)
    return arith


def _arith_chain(first: Evaluator, rest: list[tuple[str, Evaluator]]) -> Evaluator:
    steps = tuple(rest)

    def chain(env: Mapping[str, object]) -> object:
        acc = first(env)
        if acc is None:
            return None
        for op, f in steps:
            b = f(env)
            if b is None:
                return None
            acc = _arith_value(op, acc, b)
            if acc is None:
                return None
        return acc
    return chain


def _negate(f: Evaluator) -> Evaluator:
    def negate(env: Mapping[str, object]) -> object:
        a = f(env)
        return None if a is None else -a
    return negate


def _compare2(test: Callable[[object, object], bool], fa: Evaluator, fb: Evaluator,
              b_const: object, b_is_const: bool) -> Evaluator:
    if b_is_const:
        b = b_const
        if b is None:
            return _constant(None)

        def compare_c(env: Mapping[str, object]) -> object:
            a = fa(env)
            return None if a is None else test(a, b)
        return compare_c

    def compare(env: Mapping[str, object]) -> object:
        a = fa(env)
        if a is None:
            return None
        c = fb(env)
        return None if c is None else test(a, c)
    return compare


def _compare_chain(first: Evaluator, rest: list[tuple[Callable[[object, object], bool], Evaluator]]
                   ) -> Evaluator:
    steps = tuple(rest)

    def chain(env: Mapping[str, object]) -> object:
        # a < b <= c is (a < b) and (b <= c) in three-valued logic, each operand read once
        unknown = False
        left = first(env)
        for test, f in steps:
            right = f(env)
            if left is None or right is None:
                unknown = True
            elif not test(left, right):
                return False
            left = right
        return None if unknown else True
    return chain


def _junction(fs: list[Evaluator], decisive: bool) -> Evaluator:
    """Combine with `and` (decisive False) or `or` (decisive True), three-valued, short-circuiting.

    The first operand that is `decisive` decides; else any unknown makes the result unknown;
    else it is `not decisive`. Two operands (the common case) get an unrolled closure.
    """
    other = not decisive
    if len(fs) == 2:
        fa, fb = fs

        def two(env: Mapping[str, object]) -> object:
            a = fa(env)
            if a is decisive:
                return decisive
            b = fb(env)
            if b is decisive:
                return decisive
            return None if a is None or b is None else other
        return two
    items = tuple(fs)

    def many(env: Mapping[str, object]) -> object:
        unknown = False
        for f in items:
            v = f(env)
            if v is decisive:
                return decisive
            if v is None:
                unknown = True
        return None if unknown else other
    return many


def _and(fs: list[Evaluator]) -> Evaluator:
    return _junction(fs, False)


def _or(fs: list[Evaluator]) -> Evaluator:
    return _junction(fs, True)


def _not(f: Evaluator) -> Evaluator:
    def negation(env: Mapping[str, object]) -> object:
        v = f(env)
        return None if v is None else not v
    return negation


def _crosses(above: bool, now_a: Evaluator, now_b: Evaluator, before_a: Evaluator,
             before_b: Evaluator) -> Evaluator:
    def crosses(env: Mapping[str, object]) -> object:
        a, b = now_a(env), now_b(env)
        if a is None or b is None:
            return None
        pa, pb = before_a(env), before_b(env)
        if pa is None or pb is None:
            return None
        return pa <= pb and a > b if above else pa >= pb and a < b
    return crosses


# ---------------------------------------------------------------- tokens and nodes


@dataclass(frozen=True, slots=True)
class _Token:
    kind: Literal["num", "str", "name", "kw", "op", "end"]
    text: str
    pos: int
    value: object = None


class _Node:
    """A checked subexpression: its type, source span and evaluator; `const` when it is a constant."""

    __slots__ = ("type", "start", "end", "fn", "const", "is_const")

    def __init__(self, type_: ValueType, start: int, end: int, fn: Evaluator, *,
                 const: object = None, is_const: bool = False) -> None:
        self.type = type_
        self.start = start
        self.end = end
        self.fn = fn
        self.const = const
        self.is_const = is_const


def _const_node(type_: ValueType, start: int, end: int, value: object) -> _Node:
    return _Node(type_, start, end, _constant(value), const=value, is_const=True)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos, n = 0, len(text)

    def fail(message: str, at: int) -> NoReturn:
        raise ExprError(message, text=text, column=at + 1)

    while True:
        while pos < n and text[pos] in _WHITESPACE:
            pos += 1
        if pos >= n:
            break
        c = text[pos]
        if c.isascii() and (c.isdigit() or (c == "." and pos + 1 < n and text[pos + 1].isascii()
                                             and text[pos + 1].isdigit())):
            match = _NUMBER_RE.match(text, pos)
            assert match is not None
            end = match.end()
            tail = _NUMBER_TAIL_RE.match(text, end)
            if tail is not None and tail.end() > end:
                fail(f"malformed number '{text[pos:tail.end()]}'", pos)
            value = float(match.group())
            if not math.isfinite(value):
                fail(f"number out of range: '{match.group()}'", pos)
            tokens.append(_Token("num", match.group(), pos, value))
            pos = end
        elif c.isascii() and (c.isalpha() or c == "_"):
            match = _NAME_RE.match(text, pos)
            assert match is not None
            word, end = match.group(), match.end()
            if end < n and text[end] == ".":
                fail("unexpected '.'", end)
            at = pos
            for segment in word.split("."):
                if _dunder(segment):
                    fail(f"dunder names are not allowed: '{segment}'", at)
                at += len(segment) + 1
            first = word.split(".", 1)[0]
            if first in _NOT_ALLOWED:
                fail(_NOT_ALLOWED[first], pos)
            tokens.append(_Token("kw" if word in _KEYWORDS else "name", word, pos))
            pos = end
        elif c in "'\"":
            pos = _string(text, pos, tokens)
        else:
            for bad in ("**", "//", "&&", "||"):
                if text.startswith(bad, pos):
                    fail(_BAD_OPERATORS[bad], pos)
            for op in _OPERATORS:
                if text.startswith(op, pos):
                    tokens.append(_Token("op", op, pos))
                    pos += len(op)
                    break
            else:
                fail(_BAD_OPERATORS.get(c, f"unexpected '{c}'"), pos)
    tokens.append(_Token("end", "", len(text.rstrip(_WHITESPACE))))
    return tokens


def _string(text: str, start: int, tokens: list[_Token]) -> int:
    quote, pos, n = text[start], start + 1, len(text)
    chars: list[str] = []
    while pos < n:
        c = text[pos]
        if c == quote:
            value = "".join(chars)
            if len(value) > MAX_STRING:
                raise ExprError(f"string longer than {MAX_STRING} characters", text=text, column=start + 1)
            tokens.append(_Token("str", text[start:pos + 1], start, value))
            return pos + 1
        if c == "\\" and pos + 1 < n:
            escaped = text[pos + 1]
            if escaped not in "'\"\\":
                raise ExprError(f"unsupported escape '\\{escaped}' in a string (only \\' \\\" \\\\)",
                                text=text, column=pos + 1)
            chars.append(escaped)
            pos += 2
            continue
        chars.append(c)
        pos += 1
    raise ExprError("unterminated string", text=text, column=start + 1)


# ---------------------------------------------------------------- the parser


class _Parser:
    """Recursive descent over the tokens; each rule returns a checked, compiled node."""

    def __init__(self, text: object, vocabulary: Vocabulary) -> None:
        if not isinstance(text, str):
            raise ExprError(f"an expression must be text, found {type(text).__name__}: {repr(text)[:60]}")
        if len(text) > MAX_TEXT:
            raise ExprError(f"expression too long: {len(text)} characters (at most {MAX_TEXT})", text=text)
        self.text = text
        self.vocab = vocabulary
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0
        self.names: set[str] = set()
        self.keys: set[str] = set()
        self.series: set[tuple[str, tuple[int, ...]]] = set()

    # -- helpers

    def fail(self, message: str, pos: int) -> NoReturn:
        raise ExprError(message, text=self.text, column=pos + 1)

    def peek(self, offset: int = 0) -> _Token:
        return self.tokens[min(self.i + offset, len(self.tokens) - 1)]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        if token.kind != "end":
            self.i += 1
        return token

    def at(self, kind: str, text: str | None = None, offset: int = 0) -> bool:
        token = self.peek(offset)
        return token.kind == kind and (text is None or token.text == text)

    def unexpected(self, token: _Token, expected: str = "") -> NoReturn:
        if token.kind == "end":
            self.fail("unexpected end of expression" + (f"; expected {expected}" if expected else ""),
                      token.pos)
        self.fail(f"unexpected '{token.text}'" + (f"; expected {expected}" if expected else ""), token.pos)

    def frag(self, start: int, end: int) -> str:
        return self.text[start:end]

    def enter(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(f"expression nested too deeply (more than {MAX_DEPTH} levels)", token.pos)

    def close(self, opener: _Token, what: str) -> int:
        token = self.peek()
        if token.kind == "op" and token.text == ")":
            self.take()
            self.depth -= 1
            return token.pos + 1
        if token.kind == "end":
            self.fail(f"unclosed '(' of {what}", opener.pos)
        self.unexpected(token, "')'")

    # -- grammar

    def compile(self) -> Compiled:
        if self.peek().kind == "end":
            raise ExprError("empty expression", text=self.text)
        node = self.expr()
        if self.peek().kind != "end":
            self.unexpected(self.peek())
        return Compiled(source=self.text, type=node.type, names=frozenset(self.names),
                        keys=frozenset(self.keys), series=frozenset(self.series), evaluate=node.fn)

    def expr(self) -> _Node:
        return self.logical("or", self.and_expr, _or)

    def and_expr(self) -> _Node:
        return self.logical("and", self.not_expr, _and)

    def logical(self, word: str, operand: Callable[[], _Node],
                build: Callable[[list[_Node]], Evaluator]) -> _Node:
        items = [operand()]
        while self.at("kw", word):
            self.take()
            items.append(operand())
            for item in items[-2:]:
                if item.type != "bool":
                    self.fail(f"'{word}' needs true/false operands, found {item.type}: "
                              f"{self.frag(item.start, item.end)}", item.start)
        if len(items) == 1:
            return items[0]
        return _Node("bool", items[0].start, items[-1].end, build([item.fn for item in items]))

    def not_expr(self) -> _Node:
        if self.at("kw", "not"):
            token = self.take()
            self.enter(token)
            operand = self.not_expr()
            self.depth -= 1
            if operand.type != "bool":
                self.fail(f"'not' needs a true/false operand, found {operand.type}: "
                          f"{self.frag(operand.start, operand.end)}", operand.start)
            if operand.is_const:
                value = None if operand.const is None else not operand.const
                return _const_node("bool", token.pos, operand.end, value)
            return _Node("bool", token.pos, operand.end, _not(operand.fn))
        return self.comparison()

    def comparison(self) -> _Node:
        first = self.sum()
        operands: list[_Node] = [first]
        steps: list[tuple[Callable[[object, object], bool], Evaluator]] = []
        after_list = False
        while True:
            token = self.peek()
            membership = token.kind == "kw" and (token.text == "in" or (
                token.text == "not" and self.at("kw", "in", 1)))
            if not (membership or (token.kind == "op" and token.text in _COMPARE)):
                break
            if after_list:
                self.fail(f"'{token.text}' cannot follow a list: a list may only end a comparison",
                          token.pos)
            left = operands[-1]
            self.take()
            if membership:
                negated = token.text == "not"
                if negated:
                    self.take()
                members, element, end = self.literal_list()
                if element is not None and element != left.type:
                    self.fail(f"cannot look for a {left.type} in a list of {element}: "
                              f"{self.frag(left.start, end)}", token.pos)
                test = _not_in if negated else _in
                right = _const_node(left.type, left.start, end, members)
                after_list = True
            else:
                right = self.sum()
                op = token.text
                fragment = self.frag(left.start, right.end)
                if left.type != right.type:
                    self.fail(f"cannot compare {left.type} with {right.type}: {fragment}", token.pos)
                if op in _ORDERING and left.type != "num":
                    self.fail(f"cannot order {left.type} values with '{op}' (only numbers): {fragment}",
                              token.pos)
                test = _COMPARE[op]
            operands.append(right)
            steps.append((test, right.fn))
        if not steps:
            return first
        start, end = first.start, operands[-1].end
        if len(steps) == 1:
            right = operands[1]
            if first.is_const and right.is_const:
                value = None if first.const is None or right.const is None else \
                    steps[0][0](first.const, right.const)
                return _const_node("bool", start, end, value)
            return _Node("bool", start, end, _compare2(steps[0][0], first.fn, right.fn,
                                                       right.const, right.is_const))
        return _Node("bool", start, end, _compare_chain(first.fn, steps))

    def literal_list(self) -> tuple[frozenset[object], ValueType | None, int]:
        opener = self.peek()
        if not (opener.kind == "op" and opener.text == "["):
            self.unexpected(opener, "a list such as [1, 2] or [\"LONG\", \"SHORT\"] after 'in'")
        self.take()
        values: list[object] = []
        element: ValueType | None = None
        while not self.at("op", "]"):
            token = self.take()
            sign = 1.0
            if token.kind == "op" and token.text == "-" and self.at("num"):
                sign, token = -1.0, self.take()
            if token.kind == "num":
                kind: ValueType = "num"
                values.append(sign * token.value)  # type: ignore[operator]
            elif token.kind == "str":
                kind = "str"
                values.append(token.value)
            elif token.kind == "end":
                self.fail("unclosed '[' of a list", opener.pos)
            else:
                self.fail(f"a list holds only number or string literals, found '{token.text}'", token.pos)
            if element is not None and kind != element:
                self.fail(f"a list must hold one type, found {element} and {kind}", token.pos)
            element = kind
            if self.at("op", ","):
                self.take()
            elif not self.at("op", "]"):
                if self.peek().kind == "end":
                    self.fail("unclosed '[' of a list", opener.pos)
                self.unexpected(self.peek(), "',' or ']'")
        end = self.take().pos + 1
        return frozenset(values), element, end

    def sum(self) -> _Node:
        return self.arithmetic(("+", "-"), self.term)

    def term(self) -> _Node:
        return self.arithmetic(("*", "/"), self.unary)

    def arithmetic(self, ops: tuple[str, ...], operand: Callable[[], _Node]) -> _Node:
        first = operand()
        if not (self.peek().kind == "op" and self.peek().text in ops):
            return first
        nodes = [first]
        rest: list[tuple[str, _Node]] = []
        while self.peek().kind == "op" and self.peek().text in ops:
            token = self.take()
            right = operand()
            left = nodes[-1]
            if left.type != "num" or right.type != "num":
                self.fail(f"cannot apply '{token.text}' to {left.type} and {right.type}: "
                          f"{self.frag(first.start, right.end)}", token.pos)
            nodes.append(right)
            rest.append((token.text, right))
        start, end = first.start, nodes[-1].end
        if all(node.is_const for node in nodes):
            value = first.const
            for op, node in rest:
                value = None if value is None or node.const is None else \
                    _arith_value(op, value, node.const)  # type: ignore[arg-type]
            return _const_node("num", start, end, value)
        if len(rest) == 1:
            op, right = rest[0]
            return _Node("num", start, end, _arith2(op, first.fn, right.fn, right.const, right.is_const))
        return _Node("num", start, end, _arith_chain(first.fn, [(op, node.fn) for op, node in rest]))

    def unary(self) -> _Node:
        minus = 0
        start = self.peek().pos
        while self.at("op", "-"):
            self.take()
            minus += 1
        node = self.primary()
        if not minus:
            return node
        if node.type != "num":
            self.fail(f"cannot negate {node.type}: {self.frag(start, node.end)}", start)
        if minus % 2 == 0:
            return _Node("num", start, node.end, node.fn, const=node.const, is_const=node.is_const)
        if node.is_const:
            return _const_node("num", start, node.end, None if node.const is None else -node.const)
        return _Node("num", start, node.end, _negate(node.fn))

    def primary(self) -> _Node:
        token = self.take()
        end = token.pos + len(token.text)
        if token.kind == "num":
            return _const_node("num", token.pos, end, token.value)
        if token.kind == "str":
            return _const_node("str", token.pos, end, token.value)
        if token.kind == "kw" and token.text in ("true", "false"):
            return _const_node("bool", token.pos, end, token.text == "true")
        if token.kind == "op" and token.text == "(":
            self.enter(token)
            inner = self.expr()
            close = self.close(token, "a parenthesis")
            return _Node(inner.type, token.pos, close, inner.fn, const=inner.const, is_const=inner.is_const)
        if token.kind == "name":
            if self.at("op", "("):
                return self.call(token)
            return self.name(token)
        self.unexpected(token, "a value")

    def name(self, token: _Token) -> _Node:
        name, end = token.text, token.pos + len(token.text)
        kind = self.vocab.names.get(name)
        if kind is None:
            self.fail(self.unknown_name(name), token.pos)
        self.names.add(name)
        self.keys.add(name)
        return _Node(kind, token.pos, end, _READERS[kind](name))

    def unknown_name(self, name: str) -> str:
        if name in self.vocab.prev_names:
            return f"'{name}' can only be read inside prev() or crosses_above/crosses_below()"
        if name in self.vocab.series or name in _BUILTINS:
            return f"'{name}' is a function: call it, e.g. {name}(…)"
        if name.lower() in _KEYWORDS:
            return f"unknown name '{name}'; keywords are lowercase: '{name.lower()}'"
        known = sorted(self.vocab.names)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        if close:
            return f"unknown name '{name}'; did you mean '{close[0]}'?"
        prefix = name.split(".", 1)[0] + "."
        related = [n for n in known if n.startswith(prefix)] or known
        shown = ", ".join(related[:8]) + (", …" if len(related) > 8 else "")
        return f"unknown name '{name}'; names are: {shown}" if shown else f"unknown name '{name}'"

    def call(self, token: _Token) -> _Node:
        name = token.text
        if name in self.vocab.series:
            return self.series_call(token)[0]
        if name not in _BUILTINS:
            functions = ", ".join(sorted(set(_BUILTINS) | set(self.vocab.series)))
            self.fail(f"unknown function '{name}'; functions are: {functions}", token.pos)
        opener = self.take()
        self.enter(opener)
        if name in ("prev", "crosses_above", "crosses_below"):
            return self.series_function(token, opener)
        args: list[_Node] = []
        if not self.at("op", ")"):
            args.append(self.expr())
            while self.at("op", ","):
                self.take()
                args.append(self.expr())
        end = self.close(opener, f"{name}()")
        if name == "known":
            if len(args) != 1:
                self.fail(f"known() takes 1 argument, got {len(args)}", token.pos)
            arg = args[0]
            if arg.is_const:
                return _const_node("bool", token.pos, end, arg.const is not None)
            f = arg.fn
            return _Node("bool", token.pos, end, lambda env: f(env) is not None)
        if name == "abs" and len(args) != 1:
            self.fail(f"abs() takes 1 argument, got {len(args)}", token.pos)
        if name in ("min", "max") and len(args) < 2:
            self.fail(f"{name}() takes 2 or more arguments, got {len(args)}", token.pos)
        for arg in args:
            if arg.type != "num":
                self.fail(f"{name}() takes numbers, found {arg.type}: {self.frag(arg.start, arg.end)}",
                          arg.start)
        return _Node("num", token.pos, end, self.numeric_function(name, [arg.fn for arg in args]))

    @staticmethod
    def numeric_function(name: str, fs: list[Evaluator]) -> Evaluator:
        if name == "abs":
            f = fs[0]

            def absolute(env: Mapping[str, object]) -> object:
                v = f(env)
                return None if v is None else abs(v)  # type: ignore[arg-type]
            return absolute
        pick = min if name == "min" else max
        items = tuple(fs)

        def extreme(env: Mapping[str, object]) -> object:
            values = [f(env) for f in items]
            return None if None in values else pick(values)  # type: ignore[type-var]
        return extreme

    def series_call(self, token: _Token, *, read_now: bool = True) -> tuple[_Node, str]:
        """Parse a series call whose arguments are integer literals; return its lookup node and key."""
        name, spec = token.text, self.vocab.series[token.text]
        example = ",".join(str(min(max(spec.low, 20), spec.high)) for _ in range(spec.arity))
        rule = (f"{name}() takes {spec.arity} integer argument{'s' if spec.arity != 1 else ''}, "
                f"each from {spec.low} to {spec.high}, e.g. {name}({example})")
        opener = self.take()
        self.enter(opener)
        args: list[int] = []
        while True:
            arg = self.peek()
            if len(args) == spec.arity:
                if arg.kind == "op" and arg.text == ")":
                    break
                if arg.kind == "end":
                    self.fail(f"unclosed '(' of {name}()", opener.pos)
                self.fail(f"{rule}; found too many arguments", arg.pos)
            if args:
                if not (arg.kind == "op" and arg.text == ","):
                    self.fail(f"{rule}; found {len(args)}", arg.pos)
                self.take()
                arg = self.peek()
            if arg.kind != "num" or not arg.text.isdigit() or not (
                    self.at_argument_end(1) or self.at("end", offset=1)):
                self.fail(f"{rule}; found {self.argument_text(self.i) or 'no argument'}", arg.pos)
            number = int(arg.text)
            if not spec.low <= number <= spec.high:
                self.fail(f"{name}({number}) is out of range: {rule}", arg.pos)
            args.append(number)
            self.take()
        end = self.close(opener, f"{name}()")
        key = series_key(name, tuple(args))
        self.series.add((name, tuple(args)))
        if read_now:
            self.keys.add(key)
        return _Node("num", token.pos, end, _read_num(key)), key

    def at_argument_end(self, offset: int) -> bool:
        token = self.peek(offset)
        return token.kind == "op" and token.text in (",", ")")

    def argument_text(self, index: int) -> str:
        """Return the source of the argument starting at token `index` (up to its ',' or ')')."""
        level, j = 0, index
        start = end = self.tokens[index].pos
        while self.tokens[j].kind != "end":
            token = self.tokens[j]
            if token.kind == "op" and token.text in ("(", "["):
                level += 1
            elif token.kind == "op" and token.text in (")", "]"):
                if level == 0:
                    break
                level -= 1
            elif token.kind == "op" and token.text == "," and level == 0:
                break
            end = token.pos + len(token.text)
            j += 1
        return self.text[start:end]

    def series_operand(self, crosses: bool, allowed: str) -> tuple[Evaluator, Evaluator, bool]:
        """Parse one operand of prev()/crosses_*(): return (now, before, is_constant) readers."""
        first = self.i
        operand = self.series_operand_at(crosses, allowed)
        if not self.at_argument_end(0) and self.peek().kind != "end":
            self.fail(f"{allowed}; found {self.argument_text(first)}", self.tokens[first].pos)
        return operand

    def series_operand_at(self, crosses: bool, allowed: str) -> tuple[Evaluator, Evaluator, bool]:
        arg = self.peek()
        if arg.kind == "name" and arg.text in self.vocab.series and self.at("op", "(", 1):
            self.take()
            node, key = self.series_call(arg, read_now=crosses)
            self.keys.add(prev_key(key))
            return node.fn, _read_num(prev_key(key)), False
        if arg.kind == "name" and arg.text in self.vocab.prev_names and self.at_argument_end(1):
            self.take()
            if crosses:
                self.names.add(arg.text)
                self.keys.add(arg.text)
            self.keys.add(prev_key(arg.text))
            return _read_num(arg.text), _read_num(prev_key(arg.text)), False
        if crosses:
            sign, offset = 1.0, 0
            if self.at("op", "-"):
                sign, offset = -1.0, 1
            number = self.peek(offset)
            if number.kind == "num" and self.at_argument_end(offset + 1):
                self.i += offset + 1
                value = sign * number.value  # type: ignore[operator]
                return _constant(value), _constant(value), True
        self.fail(f"{allowed}; found {self.argument_text(self.i) or 'nothing'}", arg.pos)

    def series_function(self, token: _Token, opener: _Token) -> _Node:
        """Parse prev(S) or crosses_above/below(A, B), whose operands are series (or numbers)."""
        name = token.text
        crosses = name != "prev"
        series = ", ".join(f"{s}(…)" for s in sorted(self.vocab.series)) or "none declared"
        fields = ", ".join(sorted(self.vocab.prev_names)) or "none declared"
        allowed = (f"{name}() takes {'two operands, each' if crosses else 'one operand:'} a series "
                   f"call ({series}) or a series name ({fields})" + (" or a number" if crosses else ""))
        operands = [self.series_operand(crosses, allowed)]
        if crosses:
            if not self.at("op", ","):
                self.fail(f"{allowed}; found only one", self.peek().pos)
            self.take()
            operands.append(self.series_operand(crosses, allowed))
        if self.at("op", ","):
            self.fail(f"{allowed}; found too many operands", self.peek().pos)
        end = self.close(opener, f"{name}()")
        if not crosses:
            return _Node("num", token.pos, end, operands[0][1])
        (now_a, before_a, const_a), (now_b, before_b, const_b) = operands
        if const_a and const_b:
            self.fail(f"{name}() needs at least one series operand, not two numbers", token.pos)
        return _Node("bool", token.pos, end, _crosses(name == "crosses_above", now_a, now_b,
                                                       before_a, before_b))
