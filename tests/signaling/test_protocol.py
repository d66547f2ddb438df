"""The wire format on its own: parsing and validation without sockets."""

from __future__ import annotations

import orjson
import pytest

from signaling.protocol import (
    MAX_MESSAGE_BYTES,
    Candidate,
    Chat,
    ErrorCode,
    Join,
    Offer,
    ProtocolError,
    Role,
    parse,
    relay_frame,
    to_wire,
)


def frame(**fields: object) -> str:
    return orjson.dumps(fields).decode()


def code_of(raw: str | bytes) -> ErrorCode:
    with pytest.raises(ProtocolError) as info:
        parse(raw)
    return info.value.code


def test_join_parses_into_a_typed_message() -> None:
    message = parse(frame(type="join", v=1, consultation="abc_DEF-1", role="nurse", token="t"))
    assert message == Join(consultation="abc_DEF-1", role=Role.NURSE, token="t")


def test_w3c_names_stay_on_the_wire() -> None:
    message = parse(frame(type="candidate", to="p1", candidate="candidate:1 1 udp 1 127.0.0.1 9 typ host",
                          sdpMid="0", sdpMLineIndex=0, pc=2))
    assert isinstance(message, Candidate)
    assert (message.sdp_mid, message.sdp_mline_index, message.pc) == ("0", 0, 2)
    wire = relay_frame(message, "p2")
    assert wire["sdpMid"] == "0" and wire["sdpMLineIndex"] == 0 and wire["from"] == "p2"
    assert "sdp_mid" not in wire


def test_round_trip_of_every_client_message() -> None:
    for message in (
        Join(consultation="c1", role=Role.SPECIALIST, resume="r"),
        Offer(to="p1", sdp="v=0", pc=1, restart=True),
        Chat(text="hei"),
    ):
        assert parse(orjson.dumps(to_wire(message))) == message


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", ErrorCode.BAD_JSON),
        ("[1, 2]", ErrorCode.BAD_MESSAGE),
        (frame(text="no type"), ErrorCode.BAD_MESSAGE),
        (frame(type="teleport"), ErrorCode.UNKNOWN_TYPE),
        (frame(type="chat"), ErrorCode.BAD_MESSAGE),
        (frame(type="chat", text="   "), ErrorCode.BAD_MESSAGE),
        (frame(type="chat", text="x" * 2001), ErrorCode.BAD_MESSAGE),
        (frame(type="chat", text="hi", extra=1), ErrorCode.BAD_MESSAGE),
        (frame(type="offer", to="p1", sdp=5), ErrorCode.BAD_MESSAGE),
        (frame(type="offer", to="p1", sdp="v=0", pc=True), ErrorCode.BAD_MESSAGE),
        (frame(type="offer", to="p1", sdp="v=0", pc=-1), ErrorCode.BAD_MESSAGE),
        (frame(type="offer", to="../etc", sdp="v=0"), ErrorCode.BAD_MESSAGE),
        (frame(type="join", consultation="c1", role="surgeon", token="t"), ErrorCode.BAD_MESSAGE),
        (frame(type="join", consultation="c1", role="nurse"), ErrorCode.BAD_MESSAGE),
        (frame(type="join", v=2, consultation="c1", role="nurse", token="t"), ErrorCode.UNSUPPORTED_VERSION),
        ("x" * (MAX_MESSAGE_BYTES + 1), ErrorCode.TOO_LARGE),
    ],
)
def test_bad_frames_get_stable_codes(raw: str, code: ErrorCode) -> None:
    assert code_of(raw) is code


def padded(text: str, size: int) -> str:
    """A chat frame with ``text``, padded with JSON whitespace to ``size`` UTF-8 bytes."""
    raw = frame(type="chat", text=text)
    return raw + " " * (size - len(raw.encode()))


def test_the_size_limit_counts_utf8_bytes_not_characters() -> None:
    two_byte = "ø" * 1000
    assert parse(padded(two_byte, MAX_MESSAGE_BYTES)) == Chat(text=two_byte)
    over = padded(two_byte, MAX_MESSAGE_BYTES + 1)
    assert len(over) < MAX_MESSAGE_BYTES  # fewer characters than the limit, more bytes
    assert code_of(over) is code_of(over.encode()) is ErrorCode.TOO_LARGE
    four_byte = "😀" * (MAX_MESSAGE_BYTES // 4)
    assert code_of(frame(type="chat", text=four_byte)) is ErrorCode.TOO_LARGE
    assert parse(frame(type="chat", text="😀" * 2000)) == Chat(text="😀" * 2000)


def test_unknown_type_error_does_not_echo_long_input() -> None:
    with pytest.raises(ProtocolError) as info:
        parse(frame(type="x" * 1000))
    assert info.value.ref is not None and len(info.value.ref) <= 40
