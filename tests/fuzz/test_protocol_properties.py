"""Properties of the wire protocol and of the image cleaner, under hypothesis.

Every client message survives ``to_wire`` -> JSON -> ``parse`` unchanged; anything else
that reaches ``parse`` is refused with a :class:`ProtocolError` and a known code, never
another exception. ``clean_image`` either returns a clean picture or refuses with
:class:`ImageRejected`.
"""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from signaling.protocol import (
    MAX_CANDIDATE_CHARS,
    MAX_CHAT_CHARS,
    MAX_TOKEN_CHARS,
    Answer,
    Candidate,
    Chat,
    ClientMessage,
    EndOfCandidates,
    ErrorCode,
    IceRestart,
    Join,
    Leave,
    Offer,
    ProtocolError,
    Role,
    SnapshotRequest,
    parse,
    to_wire,
)
from tests.fuzz import EXAMPLES
from woundcare.records.images import CleanImage, ImageRejected, MediaType, RejectCode, clean_image

# No example database: the run must not write into the checkout.
budget = settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow])

ids = st.text(alphabet="ABCXYZabcxyz0189_-", min_size=1, max_size=64)
pcs = st.integers(min_value=0, max_value=2**31 - 1)
sdps = st.text(max_size=2000)  # well inside MAX_SDP_CHARS; the cap is checked below
tokens = st.text(max_size=MAX_TOKEN_CHARS)

joins = st.builds(
    Join,
    consultation=ids,
    role=st.sampled_from(Role),
    token=tokens,
    resume=st.none() | tokens,
) | st.builds(Join, consultation=ids, role=st.sampled_from(Role), resume=tokens)
offers = st.builds(Offer, to=ids, sdp=sdps, pc=pcs, restart=st.booleans())
answers = st.builds(Answer, to=ids, sdp=sdps, pc=pcs)
candidates = st.builds(
    Candidate,
    to=ids,
    candidate=st.text(max_size=MAX_CANDIDATE_CHARS),
    sdp_mid=st.none() | st.text(max_size=64),
    sdp_mline_index=st.none() | st.integers(0, 63),
    pc=pcs,
)
chats = st.builds(
    Chat, text=st.text(min_size=1, max_size=MAX_CHAT_CHARS).filter(lambda t: bool(t.strip()))
)
messages: st.SearchStrategy[ClientMessage] = st.one_of(
    joins,
    offers,
    answers,
    candidates,
    st.builds(EndOfCandidates, to=ids, pc=pcs),
    st.builds(IceRestart, to=ids),
    st.just(Leave()),
    chats,
    st.builds(SnapshotRequest, id=ids),
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
field_names = st.sampled_from(
    ["type", "v", "consultation", "role", "token", "resume", "to", "sdp", "pc", "restart",
     "candidate", "sdpMid", "sdpMLineIndex", "text", "id", "from", "sdp_mid"]
) | st.text(max_size=10)
type_names = st.sampled_from(
    ["join", "offer", "answer", "candidate", "end_of_candidates", "ice_restart", "leave", "chat",
     "snapshot_request", "error", "JOIN", ""]
)


def refused(raw: str | bytes) -> ErrorCode | None:
    """What ``parse`` makes of ``raw``: ``None`` if accepted, else its error code. Any other
    exception escapes and fails the test."""
    try:
        parse(raw)
    except ProtocolError as exc:
        assert isinstance(exc.code, ErrorCode)
        assert isinstance(exc.message, str) and exc.message
        return exc.code
    return None


@budget
@given(messages)
def test_every_message_round_trips(message: ClientMessage) -> None:
    raw = orjson.dumps(to_wire(message))
    assert parse(raw) == message
    assert parse(raw.decode()) == message


@budget
@given(st.binary(max_size=512))
def test_random_bytes_are_refused_cleanly(raw: bytes) -> None:
    refused(raw)


@budget
@given(json_values)
def test_any_json_value_is_refused_or_parsed(value: Any) -> None:
    refused(orjson.dumps(value))


@budget
@given(type_names, st.dictionaries(field_names, json_values, max_size=6))
def test_objects_with_known_types_and_random_fields(kind: str, fields: dict[str, Any]) -> None:
    refused(orjson.dumps({**fields, "type": kind}))


@budget
@given(messages, st.data())
def test_mutated_valid_messages_are_refused_or_parsed(message: ClientMessage, data: st.DataObject) -> None:
    wire = to_wire(message)
    action = data.draw(st.sampled_from(["replace", "drop", "add"]))
    if action == "replace":
        wire[data.draw(st.sampled_from(sorted(wire)))] = data.draw(json_values)
    elif action == "drop":
        del wire[data.draw(st.sampled_from(sorted(wire)))]
    else:
        wire[data.draw(field_names)] = data.draw(json_values)
    refused(orjson.dumps(wire))


@budget
@given(messages, st.data())
def test_truncated_and_flipped_frames_are_refused_cleanly(message: ClientMessage, data: st.DataObject) -> None:
    raw = bytearray(orjson.dumps(to_wire(message)))
    cut = data.draw(st.integers(0, len(raw)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, max(0, cut - 1)), st.integers(0, 255)), max_size=4))
    mutated = raw[:cut]
    for position, byte in flips:
        if position < len(mutated):
            mutated[position] = byte
    refused(bytes(mutated))


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        ({"type": "chat", "text": "x" * (MAX_CHAT_CHARS + 1)}, ErrorCode.BAD_MESSAGE),
        ({"type": "chat", "text": " \n\t"}, ErrorCode.BAD_MESSAGE),
        ({"type": "offer", "to": "a", "sdp": "v", "pc": 2**31}, ErrorCode.BAD_MESSAGE),
        ({"type": "offer", "to": "a", "sdp": "v", "pc": True}, ErrorCode.BAD_MESSAGE),
        ({"type": "offer", "to": "a", "sdp": "v", "pc": 1.0}, ErrorCode.BAD_MESSAGE),
        ({"type": "candidate", "to": "a", "candidate": "", "sdpMLineIndex": 64}, ErrorCode.BAD_MESSAGE),
        ({"type": "join", "v": 2, "consultation": "c", "role": "nurse", "token": "t"},
         ErrorCode.UNSUPPORTED_VERSION),
        ({"type": "join", "consultation": "c", "role": ["nurse"], "token": "t"}, ErrorCode.BAD_MESSAGE),
        ({"type": "join", "consultation": "c", "role": {"a": 1}, "token": "t"}, ErrorCode.BAD_MESSAGE),
        ({"type": "join", "consultation": "c", "role": "nurse"}, ErrorCode.BAD_MESSAGE),
        ({"type": "ice_restart", "to": "a" * 65}, ErrorCode.BAD_MESSAGE),
        ({"type": "snapshot_request", "id": "../x"}, ErrorCode.BAD_MESSAGE),
        ({"type": ["chat"], "text": "hi"}, ErrorCode.BAD_MESSAGE),
        ({"type": "x" * 10_000}, ErrorCode.UNKNOWN_TYPE),
    ],
)
def test_edges_have_their_codes(wire: dict[str, Any], code: ErrorCode) -> None:
    assert refused(orjson.dumps(wire)) is code


def test_deep_nesting_is_bad_json() -> None:
    assert refused(b"[" * 100_000 + b"]" * 100_000) is ErrorCode.TOO_LARGE
    assert refused(b'{"type":"chat","text":' + b"[" * 5000 + b"]" * 5000 + b"}") is ErrorCode.BAD_JSON


# The image cleaner -------------------------------------------------------------------------

def _sample(fmt: str) -> bytes:
    image = Image.new("RGB", (40, 32), (180, 60, 40))
    for x in range(40):
        image.putpixel((x, x % 32), (x * 6, 200, 255 - x * 6))
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


SAMPLES = {"JPEG": _sample("JPEG"), "PNG": _sample("PNG"), "WEBP": _sample("WEBP")}
image_budget = settings(max_examples=max(20, EXAMPLES // 4), deadline=None, database=None,
                        suppress_health_check=[HealthCheck.too_slow])


def cleaned_or_refused(data: bytes) -> CleanImage | RejectCode:
    try:
        clean = clean_image(data, max_pixels=4_000_000)
    except ImageRejected as exc:
        assert isinstance(exc.code, RejectCode)
        return exc.code
    assert isinstance(clean.media_type, MediaType)
    assert clean.width >= 16 and clean.height >= 16
    with Image.open(io.BytesIO(clean.data)) as again:
        assert again.size == (clean.width, clean.height)
    with Image.open(io.BytesIO(clean.thumbnail)) as thumb:
        assert thumb.format == "JPEG" and thumb.size == (clean.thumb_width, clean.thumb_height)
    return clean


@image_budget
@given(st.binary(max_size=4096))
def test_clean_image_on_random_bytes(data: bytes) -> None:
    assert cleaned_or_refused(data) in (RejectCode.NOT_AN_IMAGE, RejectCode.TRUNCATED)


@image_budget
@given(st.sampled_from(sorted(SAMPLES)), st.data())
def test_clean_image_on_mutated_pictures(fmt: str, data: st.DataObject) -> None:
    raw = bytearray(SAMPLES[fmt])
    cut = data.draw(st.integers(1, len(raw)))
    mutated = raw[:cut]
    for position, byte in data.draw(st.lists(st.tuples(st.integers(0, cut - 1), st.integers(0, 255)), max_size=8)):
        mutated[position] = byte
    mutated += data.draw(st.binary(max_size=64))
    cleaned_or_refused(bytes(mutated))
