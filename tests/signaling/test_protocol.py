"""The wire format on its own: parsing and validation without sockets."""

from __future__ import annotations

import orjson
import pytest

from signaling.protocol import (
    MAX_MESSAGE_BYTES,
    Annotation,
    Candidate,
    Chat,
    DrawOp,
    ErrorCode,
    Freeze,
    Join,
    Offer,
    ProtocolError,
    Role,
    Shape,
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


def test_telestration_frames_round_trip() -> None:
    stroke = Annotation(to="n1", op=DrawOp.STROKE, id="s-3f9a", shape=Shape.FREE,
                        points=[[0, 0], [0.25, 0.5], [1, 1.0]], color="#FF00FF", still="req-1")
    for message in (
        stroke,
        Annotation(to="n1", op=DrawOp.POINTER, points=[[0.5, 0.5]]),
        Annotation(to="n1", op=DrawOp.UNDO, id="u-1"),
        Annotation(to="n1", op=DrawOp.CLEAR, id="c-1"),
        Freeze(to="n1", on=True, id="f-1", still="req-1"),
        Freeze(to="n1", on=False, id="f-2"),
    ):
        assert parse(orjson.dumps(to_wire(message))) == message
    assert relay_frame(stroke, "s1")["points"] == [[0, 0], [0.25, 0.5], [1, 1.0]]


def stroke(**fields: object) -> str:
    base: dict[str, object] = {"type": "annotation", "to": "n1", "op": "stroke", "id": "s-1", "shape": "arrow",
                               "points": [[0.1, 0.1], [0.9, 0.9]], "color": "#00E5FF"}
    return frame(**{**base, **fields})


@pytest.mark.parametrize(
    "raw",
    [
        stroke(op="erase"),
        stroke(shape="star"),
        stroke(color="#000000"),
        stroke(color=None),
        stroke(id=None),
        stroke(id="x" * 41),
        stroke(id="a b"),
        stroke(points=[]),
        stroke(points=[[0.1, 0.1]]),  # an arrow needs two points
        stroke(shape="circle", points=[[0.1, 0.1]]),
        stroke(points=[[0.1, 0.1], [1.2, 0.5]]),
        stroke(points=[[0.1, 0.1], [-0.01, 0.5]]),
        stroke(points=[[0.1, 0.1], [True, 0.5]]),
        stroke(points=[[0.1, 0.1], ["0.5", 0.5]]),
        stroke(points=[[0.1, 0.1], [0.5]]),
        stroke(points=[[0.1, 0.1, 0.1], [0.5, 0.5]]),
        stroke(points="0.1,0.1"),
        stroke(shape="free", points=[[0.5, 0.5]] * 513),
        stroke(still="../x"),
        frame(type="annotation", to="n1", op="pointer", points=[[0.5, 0.5], [0.6, 0.6]]),
        frame(type="annotation", to="n1", op="pointer"),
        frame(type="annotation", to="n1", op="pointer", points=[[0.5, 0.5]], color="#00E5FF"),
        frame(type="annotation", to="n1", op="undo"),
        frame(type="annotation", to="n1", op="clear", id="c-1", points=[[0.5, 0.5]]),
        frame(type="annotation", to="n1", op="undo", id="u-1", shape="free"),
        frame(type="annotation", op="undo", id="u-1"),
        frame(type="freeze", to="n1", on=True, id="f-1"),
        frame(type="freeze", to="n1", on=1, id="f-1", still="r1"),
        frame(type="freeze", to="n1", on=False),
    ],
)
def test_bad_telestration_frames_are_bad_messages(raw: str) -> None:
    assert code_of(raw) is ErrorCode.BAD_MESSAGE


def test_a_free_stroke_may_hold_512_points_and_a_bad_one_is_not_echoed() -> None:
    many = [[k / 511, 1 - k / 511] for k in range(512)]
    message = parse(stroke(shape="free", points=many))
    assert isinstance(message, Annotation) and message.points == many
    with pytest.raises(ProtocolError) as info:
        parse(stroke(points=[[0.1, 0.1], [0.123456789, 7.5]]))
    assert "0.123456789" not in info.value.message and "7.5" not in info.value.message
