"""The frames' pydantic models: the words and order of their errors (protocol.md §5, §8).

``test_protocol.py`` holds the codes; here each refusal's message and ``ref`` are held to
what the hand-written parser said, a frame with several faults is told the first a reader
meets, and nothing a client wrote comes back in a message.
"""

from __future__ import annotations

import sys

import orjson
import pytest

from signaling.protocol import WHITE_SPACE, Candidate, ProtocolError, parse, to_wire

LONG = "Z" * 5000


def refusal(**fields: object) -> tuple[str, str, str | None]:
    with pytest.raises(ProtocolError) as refused:
        parse(orjson.dumps(fields))
    return refused.value.code.value, refused.value.message, refused.value.ref


@pytest.mark.parametrize(
    ("frame", "told"),
    [
        ({"type": "offer", "to": "p1"}, ("bad_message", "'sdp' is required", "offer")),
        ({"type": "offer", "to": "p1", "sdp": 5}, ("bad_message", "'sdp' must be str", None)),
        ({"type": "offer", "to": "p1", "sdp": "v", "pc": True}, ("bad_message", "'pc' must be int", None)),
        ({"type": "offer", "to": "p1", "sdp": "v", "pc": 1.0}, ("bad_message", "'pc' must be int", None)),
        ({"type": "offer", "to": "p1", "sdp": "v", "pc": 2**31}, ("bad_message", "'pc' must be 0 to 2^31-1", "offer")),
        ({"type": "offer", "to": "a\n", "sdp": "v"}, ("bad_message", "'to' must be 1-64 characters of A-Z a-z 0-9 _ -", "offer")),
        ({"type": "offer", "to": "p1", "sdp": "v", "restart": None}, ("bad_message", "'restart' must be bool", None)),
        ({"type": "answer", "to": "p1", "sdp": "x" * 49153}, ("bad_message", "'sdp' is longer than 49152 characters", "answer")),
        ({"type": "candidate", "to": "p1", "candidate": "", "sdpMid": 0}, ("bad_message", "'sdpMid' must be str/null", None)),
        ({"type": "candidate", "to": "p1", "candidate": "", "sdpMLineIndex": 64}, ("bad_message", "'sdpMLineIndex' must be 0-63", "candidate")),
        ({"type": "join", "consultation": "c1", "role": "surgeon", "token": "t"}, ("bad_message", "'role' must be Role", None)),
        ({"type": "join", "consultation": "c1", "role": "nurse"}, ("bad_message", "'token' or 'resume' is required", "join")),
        ({"type": "join", "v": 2, "consultation": "c1", "role": "nurse", "token": "t"}, ("unsupported_version", "protocol version 1 only", "join")),
        ({"type": "video_profile", "to": "p1", "mode": "auto", "active": "hd"}, ("bad_message", "'active' must be VideoProfile/null", None)),
        ({"type": "video_profile", "to": "p1", "mode": "auto", "reason": "r" * 121}, ("bad_message", "'reason' is longer than 120 characters", "video_profile")),
        ({"type": "chat", "text": "\u2003\x1c\n"}, ("bad_message", "'text' must not be empty", "chat")),
        ({"type": "chat", "text": "x" * 2001}, ("bad_message", "'text' is longer than 2000 characters", "chat")),
        ({"type": "chat", "text": "hi", LONG: 1}, ("bad_message", "unexpected field: 'chat' takes text, type", "chat")),
        ({"type": "leave", "reason": LONG}, ("bad_message", "unexpected field: 'leave' takes type", "leave")),
    ],
)
def test_each_refusal_names_its_rule_in_the_old_words(frame: dict[str, object], told: tuple[str, str, str | None]) -> None:
    code, message, ref = refusal(**frame)
    assert (code, message, ref) == told
    assert "ZZZ" not in message  # the unknown field's name is input: never echoed


@pytest.mark.parametrize(
    ("frame", "told"),
    [
        # A wrong type or an unknown field, in the frame's own order, comes first ...
        ({"type": "join", "v": 2, "extra": 1, "consultation": "c1", "role": "nurse", "token": "t"}, "unexpected field"),
        ({"type": "join", "token": 5, "v": 2, "consultation": "c1", "role": "nurse"}, "'token' must be str/null"),
        ({"type": "offer", "pc": "1", "to": 7, "sdp": "v"}, "'pc' must be int"),
        # ... then a required field missing ...
        ({"type": "join", "v": 2, "consultation": "../x"}, "'role' is required"),
        # ... then a broken limit, in the order the model declares the fields ...
        ({"type": "join", "v": 2, "consultation": "../x", "role": "nurse", "token": "t"}, "'consultation' must be 1-64"),
        ({"type": "join", "v": 2, "consultation": "c1", "role": "nurse", "token": "t" * 2049}, "protocol version 1 only"),
        ({"type": "candidate", "to": "p1", "sdpMLineIndex": 99, "candidate": "c" * 1025, "pc": -1}, "'pc' must be 0 to 2^31-1"),
        # ... and the message's own rule last.
        ({"type": "join", "consultation": "c1", "role": "nurse", "token": None}, "'token' or 'resume' is required"),
    ],
)
def test_a_frame_with_several_faults_is_told_the_first_a_reader_meets(frame: dict[str, object], told: str) -> None:
    assert refusal(**frame)[1].startswith(told)


def test_w3c_names_only_on_the_wire_snake_case_only_in_python() -> None:
    candidate = Candidate(to="p1", candidate="", sdp_mid="0", sdp_mline_index=1)
    assert to_wire(candidate) == {"type": "candidate", "to": "p1", "pc": 0, "candidate": "", "sdpMid": "0", "sdpMLineIndex": 1}
    assert refusal(type="candidate", to="p1", candidate="", sdp_mid="0")[1].startswith("unexpected field")


def test_white_space_is_what_str_strip_strips() -> None:
    # Written out in protocol.py for the chat rule; a new Python's Unicode may add to it.
    assert WHITE_SPACE == "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())


def test_a_model_read_from_python_is_as_strict_as_the_wire() -> None:
    with pytest.raises(ValueError):
        Candidate(to="p1", candidate="", pc=True)
    with pytest.raises(ValueError):
        Candidate(to="p1", candidate="", sdp_mline_index=64)
