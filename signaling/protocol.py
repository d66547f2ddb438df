"""The woundcare signaling wire protocol, version 1.

Every frame is one JSON object with a ``type``. Client frames are parsed by :func:`parse`
into the pydantic models below (:class:`signaling.strict.StrictModel`: exact JSON types, no
unknown field), one model per ``type`` in the :data:`ClientMessage` union; anything that
does not fit raises :class:`ProtocolError` with a stable :class:`ErrorCode` and a message
naming the broken rule, never the input. Server frames are built by the ``*_frame`` helpers
and serialized once with :func:`dumps`.

A new client message is one model: a :class:`Message` with its ``type`` literal and its
fields, added to :data:`ClientMessage`.

W3C names (``sdpMid``, ``sdpMLineIndex``) stay camelCase on the wire only (aliases); the
models use snake_case. The full reference is ``docs/protocol.md``.
"""

from __future__ import annotations

import enum
import typing
from typing import Annotated, Any, Literal

import orjson
from pydantic import Field, TypeAdapter, ValidationError, model_validator
from pydantic_core import ErrorDetails

from .limits import (
    MAX_CANDIDATE_CHARS,
    MAX_CHAT_CHARS,
    MAX_MESSAGE_BYTES,
    MAX_MID_CHARS,
    MAX_REASON_CHARS,
    MAX_SDP_CHARS,
    MAX_TOKEN_CHARS,
)
from .strict import CONSTRAINT_ERRORS, Rule, StrictModel, describe, errors_of, rule_of, type_names

# The limits' numbers live in signaling/limits.py (Limits defaults to MAX_MESSAGE_BYTES);
# they are read here beside the fields, and callers may still import them from here.

VERSION = 1


class Role(str, enum.Enum):
    """Who a participant is in a consultation."""

    NURSE = "nurse"
    """The nurse at the patient's home: the head camera. Exactly one per room."""
    SPECIALIST = "specialist"
    """A wound specialist viewing the camera. One or more per room."""
    OBSERVER = "observer"
    """A second viewer invited later, e.g. an interpreter or a second specialist."""


class Presence(str, enum.Enum):
    JOINED = "joined"
    RECONNECTING = "reconnecting"
    REJOINED = "rejoined"
    LEFT = "left"


class VideoMode(str, enum.Enum):
    """How the camera picks its video profile."""

    AUTO = "auto"
    """From measured loss and round-trip time (the default)."""
    STANDARD = "standard"
    LOW = "low"
    """Pinned by a viewer, e.g. a specialist who prefers a steady picture on a poor link."""


class VideoProfile(str, enum.Enum):
    """What the camera sends; stills are always full resolution (they travel over HTTP)."""

    STANDARD = "standard"
    LOW = "low"


class ErrorCode(str, enum.Enum):
    """Stable error codes; the human message may change, these do not."""

    BAD_JSON = "bad_json"
    BAD_MESSAGE = "bad_message"
    UNKNOWN_TYPE = "unknown_type"
    UNSUPPORTED_VERSION = "unsupported_version"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    NOT_JOINED = "not_joined"
    ALREADY_JOINED = "already_joined"
    TOKEN_INVALID = "token_invalid"
    TOKEN_EXPIRED = "token_expired"
    WRONG_CONSULTATION = "wrong_consultation"
    FORBIDDEN = "forbidden"
    ROLE_TAKEN = "role_taken"
    RESUME_INVALID = "resume_invalid"
    UNKNOWN_PEER = "unknown_peer"
    JOIN_TIMEOUT = "join_timeout"
    SLOW_CONSUMER = "slow_consumer"
    REPLACED = "replaced"
    REVOKED = "revoked"
    ENDED = "ended"
    GOING_AWAY = "going_away"
    INTERNAL = "internal"


class CloseCode(enum.IntEnum):
    """WebSocket close codes the server uses (4000-4999 are the application's own)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY = 1008
    TOO_LARGE = 1009
    INTERNAL = 1011
    UNAUTHORIZED = 4001
    FORBIDDEN = 4003
    JOIN_TIMEOUT = 4008
    CONFLICT = 4009
    RATE_LIMITED = 4029
    SLOW_CONSUMER = 4030


class ProtocolError(Exception):
    """A frame the server refuses; ``code`` goes on the wire, ``message`` too."""

    def __init__(self, code: ErrorCode, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


# -- the limits of a frame's fields ------------------------------------------------------

Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$"), Rule("'{field}' must be 1-64 characters of A-Z a-z 0-9 _ -")]
"""A participant, consultation or request id. (``$`` is the end of the text in
pydantic-core's regex: no trailing newline slips through.)"""
Generation = Annotated[int, Field(ge=0, lt=2**31), Rule("'{field}' must be 0 to 2^31-1")]
"""A peer-connection generation: a new number means a fresh RTCPeerConnection."""
_LONGER = Rule("'{field}' is longer than {max_length} characters")
Token = Annotated[str, Field(max_length=MAX_TOKEN_CHARS), _LONGER]
Sdp = Annotated[str, Field(max_length=MAX_SDP_CHARS), _LONGER]
IceCandidate = Annotated[str, Field(max_length=MAX_CANDIDATE_CHARS), _LONGER]
Mid = Annotated[str, Field(max_length=MAX_MID_CHARS), _LONGER]
MLineIndex = Annotated[int, Field(ge=0, lt=64), Rule("'{field}' must be 0-63")]
Reason = Annotated[str, Field(max_length=MAX_REASON_CHARS), _LONGER]
Version = Annotated[int, Field(ge=VERSION, le=VERSION), Rule(f"protocol version {VERSION} only", ErrorCode.UNSUPPORTED_VERSION)]

_BY_VALUE = Field(strict=False)
"""For enum fields: JSON has no enums, so the wire's value is read as the member (and a
Python caller passes the member); nothing else is taken by value."""


WHITE_SPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
"""What ``str.strip()`` strips (``str.isspace``; no regex class spells it exactly). Written
out: finding it takes 0.1 s over all of Unicode (a test does, for this Python)."""
_NOT_BLANK = "[^" + "".join(f"\\x{{{ord(c):x}}}" for c in WHITE_SPACE) + "]"
"""A character ``str.strip()`` keeps, anywhere in the text: pydantic-core searches, in Rust."""
ChatText = Annotated[
    str,
    Field(max_length=MAX_CHAT_CHARS, pattern=_NOT_BLANK),
    Rule("'{field}' must not be empty", on="string_pattern_mismatch"),
    _LONGER,
]


class Message(StrictModel):
    """A client frame; ``type`` is its tag in :data:`ClientMessage`. Fields are declared in
    the order their limits are checked, so the first broken one is the one told."""

    type: str


# -- the client messages ------------------------------------------------------------------


class Join(Message):
    """Enter a consultation room, or take one's place back with ``resume``."""

    type: Literal["join"] = "join"
    consultation: Id
    """The consultation id the room is for."""
    role: Annotated[Role, _BY_VALUE]
    """The role asked for; must match what the token grants."""
    v: Version = VERSION
    """Protocol version the client speaks."""
    token: Token | None = None
    """Invitation or device token; required unless resuming."""
    resume: Token | None = None
    """The resume token from an earlier ``joined`` frame."""

    @model_validator(mode="after")
    def _token_or_resume(self) -> Join:
        if self.token is None and self.resume is None:
            raise ValueError("'token' or 'resume' is required")
        return self


class Offer(Message):
    """An SDP offer for the peer ``to``; ``restart`` marks an ICE restart."""

    type: Literal["offer"] = "offer"
    to: Id
    sdp: Sdp
    pc: Generation = 0
    """Peer-connection generation: a new number means a fresh RTCPeerConnection."""
    restart: bool = False


class Answer(Message):
    type: Literal["answer"] = "answer"
    to: Id
    sdp: Sdp
    pc: Generation = 0


class Candidate(Message):
    """One trickled ICE candidate (the RTCIceCandidateInit fields)."""

    type: Literal["candidate"] = "candidate"
    to: Id
    pc: Generation = 0
    candidate: IceCandidate
    sdp_mid: Annotated[Mid | None, Field(alias="sdpMid")] = None
    sdp_mline_index: Annotated[MLineIndex | None, Field(alias="sdpMLineIndex")] = None


class EndOfCandidates(Message):
    type: Literal["end_of_candidates"] = "end_of_candidates"
    to: Id
    pc: Generation = 0


class IceRestart(Message):
    """Ask ``to`` (the offerer) to recover media: browsers restart ICE, aiortc peers
    negotiate a fresh peer connection with the next ``pc`` generation."""

    type: Literal["ice_restart"] = "ice_restart"
    to: Id


class Leave(Message):
    type: Literal["leave"] = "leave"


class Chat(Message):
    type: Literal["chat"] = "chat"
    text: ChatText


class SnapshotRequest(Message):
    """A viewer asks the nurse's device for a full-resolution still."""

    type: Literal["snapshot_request"] = "snapshot_request"
    id: Id
    """Chosen by the requester; the stored snapshot's notification echoes it."""


class VideoProfileMessage(Message):
    """The video profile, between the nurse's camera and a viewer.

    A viewer sends it to the nurse to choose ``mode``; the nurse sends it to each viewer
    whenever the ``active`` profile or the mode changes, with a short ``reason`` (figures
    such as loss and round-trip time, never patient data)."""

    type: Literal["video_profile"] = "video_profile"
    to: Id
    mode: Annotated[VideoMode, _BY_VALUE]
    active: Annotated[VideoProfile | None, _BY_VALUE] = None
    """Set by the nurse's camera: the profile it sends now."""
    reason: Reason | None = None


class DrawOp(str, enum.Enum):
    """What an ``annotation`` does on the nurse's screen (telestration)."""

    STROKE = "stroke"
    POINTER = "pointer"
    """Transient: shown for 2 s, neither stored nor logged."""
    UNDO = "undo"
    """Removes the sender's last stroke on the layer ``still`` names (live when absent)."""
    CLEAR = "clear"
    """Removes every stroke on the layer ``still`` names (live when absent)."""


class Shape(str, enum.Enum):
    FREE = "free"
    """A polyline through the points."""
    ARROW = "arrow"
    """From the first point to the last, its head at the last."""
    CIRCLE = "circle"
    """The ellipse in the box of the first two points."""


class Color(str, enum.Enum):
    """The palette: stroke colours that stay visible on skin and dressings."""

    CYAN = "#00E5FF"
    YELLOW = "#FFEB3B"
    GREEN = "#76FF03"
    MAGENTA = "#FF00FF"


PALETTE = frozenset(color.value for color in Color)
MAX_POINTS = 512
_MARK_ID_RULE = "'{field}' must be 1-40 characters of A-Z a-z 0-9 _ -"
MarkId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$"), Rule(_MARK_ID_RULE)]
"""A mark's id (an annotation's or a freeze's), unique per message for de-duplication."""


def _check_points(points: list[Any], least: int, most: int) -> None:
    # Normalized to the video frame: coordinates only, so a bool or a string is refused too.
    if not least <= len(points) <= most:
        raise ValueError(f"'points' must hold {least} to {most} points")
    for point in points:
        if type(point) is not list or len(point) != 2:
            raise ValueError("'points' must be [x, y] pairs")
        for v in point:
            if type(v) not in (int, float) or not 0 <= v <= 1:
                raise ValueError("'points' coordinates must be numbers from 0 to 1")


class Annotation(Message):
    """Telestration from a specialist to the nurse's screen: a stroke, a pointer, undo or
    clear, in coordinates normalized to the video frame (docs/protocol.md §6.11)."""

    type: Literal["annotation"] = "annotation"
    to: Id
    still: Id | None = None
    """The snapshot request whose frozen still the stroke is on; None: the live video."""
    op: Annotated[DrawOp, _BY_VALUE]
    id: MarkId | None = None
    """Chosen by the sender, unique per message: receivers de-duplicate the data-channel and
    signaling copies by it. Required except for ``pointer``."""
    shape: Annotated[Shape | None, _BY_VALUE] = None
    points: list[Any] | None = None
    """``[[x, y], ...]``, each 0 to 1, origin at the frame's top left."""
    color: str | None = None

    @model_validator(mode="after")
    def _drawing(self) -> Annotation:
        # Which fields an op takes: its own rules, after each field's (a ValueError is told
        # in its own words, protocol._WORDS).
        stroke = self.op is DrawOp.STROKE
        if self.id is None and self.op is not DrawOp.POINTER:
            raise ValueError(_MARK_ID_RULE.format(field="id"))
        if stroke != (self.shape is not None) or stroke != (self.color is not None):
            raise ValueError("'shape' and 'color' come with a stroke only")
        if self.color is not None and self.color not in PALETTE:
            raise ValueError("'color' must be one of the palette")
        if (self.points is not None) != (stroke or self.op is DrawOp.POINTER):
            raise ValueError("'points' come with a stroke or a pointer only")
        if self.points is not None:
            least = 2 if self.shape in (Shape.ARROW, Shape.CIRCLE) else 1
            _check_points(self.points, least, MAX_POINTS if stroke else 1)
        return self


class Freeze(Message):
    """A specialist freezes both screens on a still (``on``) or returns them to live video."""

    type: Literal["freeze"] = "freeze"
    to: Id
    on: bool
    id: MarkId
    """Unique per message, for de-duplication, like an annotation's."""
    still: Id | None = None
    """The ``snapshot_request`` id whose still both sides show; required with ``on``."""

    @model_validator(mode="after")
    def _still_to_freeze(self) -> Freeze:
        if self.on and self.still is None:
            raise ValueError("'still' is required to freeze")
        return self


ClientMessage = (
    Join
    | Offer
    | Answer
    | Candidate
    | EndOfCandidates
    | IceRestart
    | Leave
    | Chat
    | SnapshotRequest
    | VideoProfileMessage
    | Annotation
    | Freeze
)
"""Every client message, told apart by ``type``."""

_FRAME: TypeAdapter[ClientMessage] = TypeAdapter(Annotated[ClientMessage, Field(discriminator="type")])
"""The discriminated union :func:`parse` reads a frame with: pydantic-core picks the model
by ``type`` and checks it, no Python per field."""
MODELS: dict[str, type[Message]] = {model.model_fields["type"].default: model for model in typing.get_args(ClientMessage)}
"""Each client message's model by its ``type``."""
MESSAGE_TYPES = frozenset(MODELS)


# -- reading a frame ------------------------------------------------------------------------

_WORDS = {
    "missing": "'{field}' is required",
    "value_error": "{error}",
}
"""The words of the errors no field's :class:`~signaling.strict.Rule` or type tells: a
message's own rule (a model validator's ``ValueError``) in its own words."""


def _size_in_bytes(raw: str | bytes) -> int:
    """The frame's size in UTF-8 bytes, as it travelled. A str is encoded only when its
    length alone cannot decide the limit (a code point is 1 to 4 bytes)."""
    size = len(raw)
    if isinstance(raw, str) and MAX_MESSAGE_BYTES < size * 4 and size <= MAX_MESSAGE_BYTES:
        size = len(raw.encode("utf-8", "surrogatepass"))
    return size


def parse(raw: str | bytes) -> ClientMessage:
    """Parse and validate one client frame."""
    if _size_in_bytes(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"frames are limited to {MAX_MESSAGE_BYTES} bytes")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtocolError(ErrorCode.BAD_JSON, "frame is not valid JSON") from None
    if type(data) is not dict:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "frame must be a JSON object")
    kind = data.get("type")
    if type(kind) is not str:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "'type' is required")
    # The tag is looked at here, not by the union, so that these two keep their own words.
    model = MODELS.get(kind)
    if model is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, "unknown message type", kind[:40])
    try:
        return _FRAME.validate_python(data, by_alias=True, by_name=False)
    except ValidationError as exc:
        # Each error's path starts with the union's tag; the client wrote only the field.
        errors = [{**error, "loc": error["loc"][1:]} for error in errors_of(exc)]
        raise _refusal(model, data, errors) from None  # type: ignore[arg-type]


def _refusal(model: type[Message], data: dict[str, Any], errors: list[ErrorDetails]) -> ProtocolError:
    """The first of a frame's errors as a :class:`ProtocolError`, in the order a reader of
    the frame meets them: a value of the wrong type or a field the message does not have
    (in the frame's order), then a required field missing, then a broken limit (in the
    model's order, then the message's own rule)."""
    kind: str = data["type"]
    keys = list(data)
    fields = {field.alias or name: field for name, field in model.model_fields.items()}
    order = list(fields)

    def rank(error: ErrorDetails) -> tuple[int, int]:
        name = error["loc"][0] if error["loc"] else None
        if error["type"] == "missing":
            return 1, order.index(str(name))
        if name is None:
            return 2, len(order)
        if error["type"] in CONSTRAINT_ERRORS:
            return 2, order.index(str(name))
        return 0, keys.index(str(name))

    error = min(errors, key=rank)
    name = str(error["loc"][0]) if error["loc"] else ""
    field = fields.get(name)
    if error["type"] == "extra_forbidden":
        # The unknown name itself is not told: it is input, and may be long or personal.
        return ProtocolError(ErrorCode.BAD_MESSAGE, f"unexpected field: '{kind}' takes {', '.join(sorted(fields))}", kind)
    rule = rule_of(field, error["type"]) if field is not None and error["type"] in CONSTRAINT_ERRORS else None
    if rule is not None:
        code = ErrorCode(rule.code) if rule.code else ErrorCode.BAD_MESSAGE
        return ProtocolError(code, describe(error, {error["type"]: rule.text}), kind)
    if error["type"] in _WORDS or field is None:
        return ProtocolError(ErrorCode.BAD_MESSAGE, describe(error, _WORDS), kind)
    # No ``ref`` for a value of the wrong JSON type (protocol.md §8): the only one without.
    return ProtocolError(ErrorCode.BAD_MESSAGE, f"'{name}' must be {type_names(field)}")


def to_wire(message: ClientMessage) -> dict[str, Any]:
    """The wire form of a client message (what a client sends): absent optionals left out."""
    return message.model_dump(mode="json", by_alias=True, exclude_none=True)


def dumps(frame: dict[str, Any]) -> str:
    return orjson.dumps(frame).decode()


def error_frame(code: ErrorCode, message: str, ref: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": code.value, "message": message}
    if ref is not None:
        frame["ref"] = ref
    return frame


def recording_frame(on: bool) -> dict[str, Any]:
    """Whether the call is being recorded (docs/protocol.md §7.6): every page shows it."""
    return {"type": "recording", "state": "on" if on else "off"}


def relay_frame(message: ClientMessage, sender: str) -> dict[str, Any]:
    """A client message as the addressee receives it: the same fields plus ``from``."""
    frame = to_wire(message)
    frame["from"] = sender
    return frame
