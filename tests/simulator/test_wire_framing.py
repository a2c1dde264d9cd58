"""Framing, handshake parsing, version negotiation and message-id splitting of the simulator's wire layer."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ibapi import comm

from simulator.wire import (
    MAX_FRAME_LEN,
    FrameError,
    FrameParser,
    Handshake,
    HandshakeError,
    WireError,
    encode_msg_id,
    frame,
    negotiate,
    parse_handshake,
    split_message_id,
    uses_protobuf,
    version_reply,
)


def framed(*payloads: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(p)) + p for p in payloads)


# -- frames -----------------------------------------------------------------------------------


def test_frame_parser_fed_one_byte_at_a_time_yields_each_payload_once_complete() -> None:
    parser = FrameParser()
    stream = framed(b"71\x002\x007\x00\x00", b"8\x001\x00-1\x00")
    out: list[bytes] = []
    for i in range(len(stream)):
        out += parser.feed(stream[i:i + 1])
    assert out == [b"71\x002\x007\x00\x00", b"8\x001\x00-1\x00"]
    assert parser.pending == 0


def test_frame_parser_returns_every_frame_merged_into_one_read_and_keeps_the_tail() -> None:
    parser = FrameParser()
    stream = framed(b"a", b"bb", b"ccc")
    assert parser.feed(stream + b"\x00\x00\x00\x05de") == [b"a", b"bb", b"ccc"]
    assert parser.pending == 6
    assert parser.feed(b"fgh") == [b"defgh"]


def test_frame_parser_passes_an_empty_frame_through() -> None:
    assert FrameParser().feed(b"\x00\x00\x00\x00") == [b""]


def test_frame_parser_rejects_a_2gb_length_prefix_from_the_prefix_alone() -> None:
    parser = FrameParser()
    with pytest.raises(FrameError):
        parser.feed(b"\x7f\xff\xff\xff")
    assert parser.pending == 4       # nothing was allocated for the announced body


@pytest.mark.parametrize(("size", "rejected"), [(MAX_FRAME_LEN, False), (MAX_FRAME_LEN + 1, True),
                                                (0xFFFFFFFF, True)])
def test_frame_parser_limit_is_ibapis_maximum_message_length(size: int, rejected: bool) -> None:
    parser = FrameParser()
    if rejected:
        with pytest.raises(FrameError):
            parser.feed(struct.pack(">I", size))
    else:
        assert parser.feed(struct.pack(">I", size) + b"x") == []


def test_frame_parser_with_a_small_limit_rejects_a_frame_after_good_ones() -> None:
    parser = FrameParser(max_frame_len=4)
    with pytest.raises(FrameError):
        parser.feed(framed(b"ok") + framed(b"too long"))


def test_frame_is_what_ibapi_read_msg_unframes() -> None:
    size, payload, rest = comm.read_msg(frame(b"hello\x00") + b"x")
    assert (size, payload, rest) == (6, b"hello\x00", b"x")


def test_frame_refuses_a_payload_over_the_limit() -> None:
    with pytest.raises(ValueError):
        frame(b"x" * (MAX_FRAME_LEN + 1))


@given(payloads=st.lists(st.binary(max_size=40), max_size=8), cuts=st.lists(st.integers(0, 400), max_size=10))
def test_frame_parser_output_does_not_depend_on_how_reads_split_the_stream(payloads: list[bytes],
                                                                          cuts: list[int]) -> None:
    stream = framed(*payloads)
    bounds = sorted({0, len(stream), *(c for c in cuts if c <= len(stream))})
    parser = FrameParser()
    out: list[bytes] = []
    for start, end in zip(bounds, bounds[1:]):
        out += parser.feed(stream[start:end])
    assert out == payloads
    assert parser.pending == 0


@given(chunks=st.lists(st.binary(max_size=64), max_size=12))
def test_frame_parser_fed_random_bytes_raises_only_frame_error(chunks: list[bytes]) -> None:
    parser = FrameParser(max_frame_len=1000)
    try:
        for chunk in chunks:
            for payload in parser.feed(chunk):
                assert len(payload) <= 1000
    except FrameError:
        pass


# -- handshake --------------------------------------------------------------------------------


def hello(text: bytes) -> bytes:
    return b"API\x00" + struct.pack(">I", len(text)) + text


@pytest.mark.parametrize(("text", "expected"), [
    (b"v100..226", Handshake(100, 226, "")),
    (b"v100..226 +PACEAPI", Handshake(100, 226, "+PACEAPI")),
    (b"v100..200 +PACEAPI other", Handshake(100, 200, "+PACEAPI other")),
    (b"v176", Handshake(176, 176, "")),
    (b"v157..178", Handshake(157, 178, "")),                        # ib_async 2.1
    (b"v157..178 +PACEAPI", Handshake(157, 178, "+PACEAPI")),
])
def test_handshake_parses_version_range_and_options(text: bytes, expected: Handshake) -> None:
    data = hello(text) + b"\x00\x00\x00\x05rest!"
    assert parse_handshake(data) == (expected, 8 + len(text))


def test_handshake_split_across_reads_is_incomplete_until_the_last_byte() -> None:
    data = hello(b"v100..226")
    assert all(parse_handshake(data[:i]) is None for i in range(len(data)))
    assert parse_handshake(data) == (Handshake(100, 226, ""), len(data))


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\n", b"GE", b"\x16\x03\x01", b"API\x01" + struct.pack(">I", 9) + b"v100..226",
])
def test_handshake_with_a_bad_prefix_raises_at_once(data: bytes) -> None:
    with pytest.raises(HandshakeError):
        parse_handshake(data)


@pytest.mark.parametrize("text", [
    b"100..226", b"v100-226", b"v226..100", b"v..226", b"v100..", b"v100..226+PACEAPI", b"vABC..226",
    b"v1000000..2000000", b"v100..226 \xff", b" v100..226",
])
def test_handshake_with_bad_version_text_raises(text: bytes) -> None:
    with pytest.raises(HandshakeError):
        parse_handshake(hello(text))


@pytest.mark.parametrize("size", [0, 1025, 0x7FFFFFFF])
def test_handshake_with_absurd_length_raises_before_reading_the_text(size: int) -> None:
    with pytest.raises(HandshakeError):
        parse_handshake(b"API\x00" + struct.pack(">I", size))


@given(data=st.binary(max_size=40))
def test_handshake_parser_fed_random_bytes_raises_only_handshake_error(data: bytes) -> None:
    try:
        parse_handshake(b"API\x00" + data)
        parse_handshake(data)
    except HandshakeError:
        pass


@pytest.mark.parametrize("sv", [100, 157, 178, 200, 226])
def test_version_reply_is_a_framed_two_field_text_message(sv: int) -> None:
    reply = version_reply(sv, "20250102 10:00:00 UTC")
    _size, payload, rest = comm.read_msg(reply)
    assert rest == b"" and comm.read_fields(payload) == (str(sv).encode(), b"20250102 10:00:00 UTC")
    # ib_async splits the decoded payload on NUL and takes exactly two fields as the handshake reply.
    assert payload.decode().split("\0")[:-1] == [str(sv), "20250102 10:00:00 UTC"]


# -- negotiation ------------------------------------------------------------------------------


@pytest.mark.parametrize(("lo", "hi", "max_sv", "wire", "expected"), [
    (100, 226, 226, "protobuf", 226),
    (100, 226, 226, "text", 200),
    (100, 226, 213, "protobuf", 213),
    (100, 226, 205, "text", 200),
    (100, 210, 226, "protobuf", 210),
    (100, 200, 226, "protobuf", 200),
    (200, 200, 226, "text", 200),
    (100, 300, 226, "protobuf", 226),
    (100, 157, 226, "protobuf", 157),     # the obsolete 9.81 client gets its own text layouts
    (157, 178, 226, "protobuf", 178),     # ib_async 2.1: text at 178 whatever the wire mode
    (157, 178, 226, "text", 178),
    (100, 226, 157, "protobuf", 157),     # a simulator configured to announce an old version
    (100, 100, 226, "text", 100),
])
def test_negotiate_answers_the_highest_version_both_sides_serve(lo: int, hi: int, max_sv: int, wire: str,
                                                                 expected: int) -> None:
    assert negotiate(lo, hi, max_sv, wire=wire) == expected


@pytest.mark.parametrize(("lo", "hi", "max_sv", "wire"), [
    (227, 230, 226, "protobuf"),      # client too new
    (201, 226, 226, "text"),          # text caps at 200, below the client's minimum
    (210, 226, 205, "protobuf"),
    (179, 226, 178, "protobuf"),      # client minimum above the configured maximum
    (50, 99, 226, "protobuf"),        # below ibapi's MIN_CLIENT_VER 100: no layouts that old
])
def test_negotiate_refuses_a_range_the_simulator_cannot_serve(lo: int, hi: int, max_sv: int, wire: str) -> None:
    with pytest.raises(HandshakeError):
        negotiate(lo, hi, max_sv, wire=wire)


@pytest.mark.parametrize(("max_sv", "wire"), [(99, "protobuf"), (227, "protobuf"), (226, "json")])
def test_negotiate_with_a_bad_configuration_raises_value_error(max_sv: int, wire: str) -> None:
    with pytest.raises(ValueError):
        negotiate(100, 226, max_sv, wire=wire)


def test_negotiate_defaults_to_226_protobuf() -> None:
    assert negotiate(100, 226) == 226 and uses_protobuf(226, "protobuf")


@pytest.mark.parametrize(("sv", "wire", "expected"), [(178, "protobuf", False), (200, "protobuf", False),
                                                      (201, "protobuf", True),
                                                      (226, "text", False), (226, "protobuf", True)])
def test_uses_protobuf_only_for_protobuf_wire_from_201(sv: int, wire: str, expected: bool) -> None:
    assert uses_protobuf(sv, wire) is expected


# -- message ids ------------------------------------------------------------------------------


@pytest.mark.parametrize(("payload", "sv", "expected"), [
    (b"71\x002\x007\x00\x00", 200, (71, b"2\x007\x00\x00")),
    (b"\x00\x00\x01\x0f\x08\x07", 226, (271, b"\x08\x07")),
    (b"\x00\x00\x00\x03body", 201, (3, b"body")),
])
def test_split_message_id_follows_the_version(payload: bytes, sv: int, expected: tuple[int, bytes]) -> None:
    assert split_message_id(payload, sv) == expected


@pytest.mark.parametrize(("payload", "sv"), [(b"71", 200), (b"7x\x00", 200), (b"", 200), (b"\x00\x00", 226)])
def test_split_message_id_of_a_malformed_payload_raises_wire_error(payload: bytes, sv: int) -> None:
    with pytest.raises(WireError):
        split_message_id(payload, sv)


@pytest.mark.parametrize(("msg_id", "sv", "expected"), [(9, 200, b"9\x00"), (9, 201, b"\x00\x00\x00\x09"),
                                                        (205, 226, b"\x00\x00\x00\xcd")])
def test_encode_msg_id_is_text_up_to_200_and_binary_from_201(msg_id: int, sv: int, expected: bytes) -> None:
    assert encode_msg_id(msg_id, sv) == expected
