"""The quote channel: QuoteUpdates to symbol actors as loopback UDP datagrams, acknowledged by datagram.

Why not thespian messages: on multiprocTCPBase every message costs each end ~0.7 ms of CPU (a
pickled envelope, an acknowledgement per message, several select-loop turns), so 100 symbols at
4 quotes/s — 400 QuoteUpdates and 400 QuoteProcessed a second — kept a 2-core machine saturated
and quotes arrived half a second late. A datagram read through ThespianWatch costs the receiver
~0.06 ms and the sender one `sendto`. The contract is unchanged: the connection coalesces per
symbol and keeps at most one update in flight per subscriber; the acknowledgement datagram plays
QuoteProcessed. A quote is a snapshot (the latest wins), so a lost datagram costs nothing but a
resend: the connection re-sends the latest quote when an update stays unacknowledged for
`RESEND_AFTER_NS`.

Wire format, one ASCII datagram each, fields separated by "|", a Decimal as its str(), None as "":

    quote  Q1|token|seq|symbol|bid|ask|last|bid_size|ask_size|last_size|volume|quote_ts_ns|coalesced|ts_ns
    ack    A1|token|seq|symbol

No pickle: a datagram is parsed, never executed. The token is a secret the subscriber made and
sent in its SubscribeMarketData (a thespian message); a quote without it is dropped. Every
socket is bound to the loopback address unless the operator configures another.
"""

from __future__ import annotations

import secrets
import socket
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final

from core.types import Quote
from messages import QuoteChannel, QuoteUpdate

QUOTE_TAG: Final = "Q1"
ACK_TAG: Final = "A1"
LOOPBACK: Final = "127.0.0.1"
RESEND_AFTER_NS: Final = 1_000_000_000  # an update unacknowledged this long is taken as lost
MAX_DATAGRAM: Final = 2048               # a quote is ~150 bytes
_DRAIN_LIMIT: Final = 4096               # datagrams read per wake-up; the watch fires again for more
_SEP: Final = "|"
_QUOTE_FIELDS: Final = 14
_ACK_FIELDS: Final = 4

Address = tuple[str, int]


class ChannelError(ValueError):
    """A datagram that is not a well-formed quote or acknowledgement (or not for this subscriber)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    """A subscriber's acknowledgement of the quote datagram `seq` for `symbol`."""

    token: str
    seq: int
    symbol: str


def new_token() -> str:
    """Return a fresh channel secret."""
    return secrets.token_hex(8)


def usable_symbol(symbol: str) -> bool:
    """Return True if `symbol` can travel in a datagram (printable ASCII without the separator)."""
    return bool(symbol) and symbol.isascii() and symbol.isprintable() and _SEP not in symbol


# ---------------------------------------------------------------- codec


def _dec(value: Decimal | None) -> str:
    return "" if value is None else str(value)


def encode_quote(token: str, seq: int, update: QuoteUpdate) -> bytes:
    """Return the datagram carrying `update` as the `seq`-th quote to the subscriber holding `token`."""
    q = update.quote
    if not usable_symbol(q.symbol):
        raise ChannelError(f"symbol {q.symbol!r} cannot travel in a quote datagram")
    fields = (QUOTE_TAG, token, str(seq), q.symbol, _dec(q.bid), _dec(q.ask), _dec(q.last),
              _dec(q.bid_size), _dec(q.ask_size), _dec(q.last_size), _dec(q.volume), str(q.ts_ns),
              str(update.coalesced), str(update.ts_ns))
    return _SEP.join(fields).encode("ascii")


def _split(data: bytes, tag: str, count: int) -> list[str]:
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ChannelError("not ASCII") from None
    parts = text.split(_SEP)
    if parts[0] != tag:
        raise ChannelError(f"expected a {tag} datagram, got tag {parts[0][:8]!r}")
    if len(parts) != count:
        raise ChannelError(f"{tag} datagram has {len(parts)} fields, expected {count}")
    return parts


def _int(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ChannelError(f"{name} {text[:24]!r} is not an integer") from None
    if value < 0:
        raise ChannelError(f"{name} {value} is negative")
    return value


def _decimal(text: str, name: str, *, optional: bool) -> Decimal | None:
    if text == "" and optional:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ChannelError(f"{name} {text[:24]!r} is not a number") from None
    if not value.is_finite():
        raise ChannelError(f"{name} {text[:24]!r} is not finite")
    return value


def decode_quote(data: bytes, token: str) -> tuple[int, QuoteUpdate]:
    """Return (seq, update) from a quote datagram; raise ChannelError if it is malformed or not ours."""
    parts = _split(data, QUOTE_TAG, _QUOTE_FIELDS)
    if not secrets.compare_digest(parts[1], token):
        raise ChannelError("quote datagram with a foreign token")
    symbol = parts[3]
    if not usable_symbol(symbol):
        raise ChannelError(f"bad symbol {symbol[:24]!r}")
    seq = _int(parts[2], "seq")
    quote = Quote(
        symbol=symbol,
        bid=_decimal(parts[4], "bid", optional=True),
        ask=_decimal(parts[5], "ask", optional=True),
        last=_decimal(parts[6], "last", optional=True),
        bid_size=_decimal(parts[7], "bid_size", optional=False),  # type: ignore[arg-type]
        ask_size=_decimal(parts[8], "ask_size", optional=False),  # type: ignore[arg-type]
        last_size=_decimal(parts[9], "last_size", optional=False),  # type: ignore[arg-type]
        volume=_decimal(parts[10], "volume", optional=False),  # type: ignore[arg-type]
        ts_ns=_int(parts[11], "quote ts_ns"),
    )
    return seq, QuoteUpdate(quote=quote, coalesced=_int(parts[12], "coalesced"),
                            ts_ns=_int(parts[13], "ts_ns"))


def encode_ack(token: str, seq: int, symbol: str) -> bytes:
    """Return the acknowledgement datagram of quote `seq` for `symbol`."""
    return _SEP.join((ACK_TAG, token, str(seq), symbol)).encode("ascii")


def decode_ack(data: bytes) -> Ack:
    """Return the Ack in `data`; raise ChannelError if it is malformed."""
    parts = _split(data, ACK_TAG, _ACK_FIELDS)
    return Ack(token=parts[1], seq=_int(parts[2], "seq"), symbol=parts[3])


def latest_quote(datagrams: list[tuple[bytes, Address]], token: str
                 ) -> tuple[tuple[int, QuoteUpdate, Address] | None, list[str]]:
    """Return the newest valid quote among `datagrams` (seq, update, sender) and why the others were refused."""
    best: tuple[int, QuoteUpdate, Address] | None = None
    refused: list[str] = []
    for data, sender in datagrams:
        try:
            seq, update = decode_quote(data, token)
        except ChannelError as exc:
            refused.append(str(exc))
            continue
        if best is None or seq > best[0]:
            best = (seq, update, sender)
    return best, refused


# ---------------------------------------------------------------- sockets


class Endpoint:
    """A non-blocking UDP socket on `host` (an ephemeral port) that sends and drains datagrams."""

    def __init__(self, host: str = LOOPBACK) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind((host, 0))
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise
        self.host, self.port = self.sock.getsockname()[:2]

    def fileno(self) -> int:
        """Return the socket's descriptor (for ThespianWatch)."""
        return self.sock.fileno()

    def channel(self, token: str) -> QuoteChannel:
        """Return where a connection sends this endpoint's quotes."""
        return QuoteChannel(host=self.host, port=self.port, token=token)

    def send_to(self, address: Address, data: bytes) -> bool:
        """Send one datagram; return False when it could not leave (full buffer, gone receiver)."""
        try:
            self.sock.sendto(data, address)
        except OSError:
            return False
        return True

    def drain(self) -> list[tuple[bytes, Address]]:
        """Return the datagrams waiting now (at most a bounded number), oldest first."""
        out: list[tuple[bytes, Address]] = []
        errors = 0
        while len(out) < _DRAIN_LIMIT and errors < 8:
            try:
                data, sender = self.sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                errors += 1  # e.g. ECONNREFUSED reported for an earlier sendto: not about this read
                continue
            out.append((data, sender[:2]))
        return out

    def close(self) -> None:
        """Close the socket (idempotent)."""
        self.sock.close()
