"""The woundcare signaling wire protocol, version 1.

Every frame is one JSON object with a ``type``. Client frames are parsed into the
dataclasses below by :func:`parse`; anything that does not fit raises
:class:`ProtocolError` with a stable :class:`ErrorCode`. Server frames are built by the
``*_frame`` helpers and serialized once with :func:`dumps`.

W3C names (``sdpMid``, ``sdpMLineIndex``) stay camelCase on the wire only; the
dataclasses use snake_case. The full reference is ``docs/protocol.md``.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

VERSION = 1

MAX_MESSAGE_BYTES = 64 * 1024
MAX_SDP_CHARS = 48 * 1024
MAX_CANDIDATE_CHARS = 1024
MAX_CHAT_CHARS = 2000
MAX_TOKEN_CHARS = 2048
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Role(str, enum.Enum):
    """Who a participant is in a consultation."""

    NURSE = "nurse"
    """The nurse at the patient's home: the head camera. Exactly one per room."""
    SPECIALIST = "specialist"
    """A wound specialist viewing the camera. One or more per room."""
    OBSERVER = "observer"
    """A second viewer invited later, e.g. an interpreter or a second specialist."""
    RECORDER = "recorder"
    """The server's own silent recorder of a consented recording: it receives the camera's
    video and only answers (:data:`signaling.rules.RECORDER_SENDS`); never a viewer in the UI."""


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


def _check_id(name: str, value: str) -> None:
    if not _ID.fullmatch(value):
        raise ValueError(f"'{name}' must be 1-64 characters of A-Z a-z 0-9 _ -")


def _check_pc(value: int) -> None:
    if not 0 <= value < 2**31:
        raise ValueError("'pc' must be 0 to 2^31-1")


def _check_len(name: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise ValueError(f"'{name}' is longer than {limit} characters")


@dataclass(slots=True)
class Join:
    """Enter a consultation room, or take one's place back with ``resume``."""

    type: ClassVar[str] = "join"
    consultation: str
    """The consultation id the room is for."""
    role: Role
    """The role asked for; must match what the token grants."""
    v: int = VERSION
    """Protocol version the client speaks."""
    token: str | None = None
    """Invitation or device token; required unless resuming."""
    resume: str | None = None
    """The resume token from an earlier ``joined`` frame."""

    def __post_init__(self) -> None:
        _check_id("consultation", self.consultation)
        if self.v != VERSION:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_VERSION, f"protocol version {VERSION} only", "join"
            )
        if self.token is None and self.resume is None:
            raise ValueError("'token' or 'resume' is required")
        for name in ("token", "resume"):
            value = getattr(self, name)
            if value is not None:
                _check_len(name, value, MAX_TOKEN_CHARS)


@dataclass(slots=True)
class Offer:
    """An SDP offer for the peer ``to``; ``restart`` marks an ICE restart."""

    type: ClassVar[str] = "offer"
    to: str
    sdp: str
    pc: int = 0
    """Peer-connection generation: a new number means a fresh RTCPeerConnection."""
    restart: bool = False

    def __post_init__(self) -> None:
        _check_id("to", self.to)
        _check_len("sdp", self.sdp, MAX_SDP_CHARS)
        _check_pc(self.pc)


@dataclass(slots=True)
class Answer:
    type: ClassVar[str] = "answer"
    to: str
    sdp: str
    pc: int = 0

    def __post_init__(self) -> None:
        _check_id("to", self.to)
        _check_len("sdp", self.sdp, MAX_SDP_CHARS)
        _check_pc(self.pc)


@dataclass(slots=True)
class Candidate:
    """One trickled ICE candidate (the RTCIceCandidateInit fields)."""

    type: ClassVar[str] = "candidate"
    to: str
    candidate: str
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None
    pc: int = 0

    def __post_init__(self) -> None:
        _check_id("to", self.to)
        _check_pc(self.pc)
        _check_len("candidate", self.candidate, MAX_CANDIDATE_CHARS)
        if self.sdp_mid is not None:
            _check_len("sdpMid", self.sdp_mid, 64)
        if self.sdp_mline_index is not None and not 0 <= self.sdp_mline_index < 64:
            raise ValueError("'sdpMLineIndex' must be 0-63")


@dataclass(slots=True)
class EndOfCandidates:
    type: ClassVar[str] = "end_of_candidates"
    to: str
    pc: int = 0

    def __post_init__(self) -> None:
        _check_id("to", self.to)
        _check_pc(self.pc)


@dataclass(slots=True)
class IceRestart:
    """Ask ``to`` (the offerer) to recover media: browsers restart ICE, aiortc peers
    negotiate a fresh peer connection with the next ``pc`` generation."""

    type: ClassVar[str] = "ice_restart"
    to: str

    def __post_init__(self) -> None:
        _check_id("to", self.to)


@dataclass(slots=True)
class Leave:
    type: ClassVar[str] = "leave"


@dataclass(slots=True)
class Chat:
    type: ClassVar[str] = "chat"
    text: str

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ValueError("'text' must not be empty")
        _check_len("text", self.text, MAX_CHAT_CHARS)


@dataclass(slots=True)
class SnapshotRequest:
    """A viewer asks the nurse's device for a full-resolution still."""

    type: ClassVar[str] = "snapshot_request"
    id: str
    """Chosen by the requester; the stored snapshot's notification echoes it."""

    def __post_init__(self) -> None:
        _check_id("id", self.id)


@dataclass(slots=True)
class VideoProfileMessage:
    """The video profile, between the nurse's camera and a viewer.

    A viewer sends it to the nurse to choose ``mode``; the nurse sends it to each viewer
    whenever the ``active`` profile or the mode changes, with a short ``reason`` (figures
    such as loss and round-trip time, never patient data)."""

    type: ClassVar[str] = "video_profile"
    to: str
    mode: VideoMode
    active: VideoProfile | None = None
    """Set by the nurse's camera: the profile it sends now."""
    reason: str | None = None

    def __post_init__(self) -> None:
        _check_id("to", self.to)
        if self.reason is not None:
            _check_len("reason", self.reason, 120)


class DrawOp(str, enum.Enum):
    """What an ``annotation`` does on the nurse's screen (telestration)."""

    STROKE = "stroke"
    POINTER = "pointer"
    """Transient: shown for 2 s, neither stored nor logged."""
    UNDO = "undo"
    CLEAR = "clear"


class Shape(str, enum.Enum):
    FREE = "free"
    ARROW = "arrow"
    CIRCLE = "circle"


PALETTE = frozenset({"#00E5FF", "#FFEB3B", "#76FF03", "#FF00FF"})
"""Stroke colours that stay visible on skin and dressings."""
MAX_POINTS = 512
_MARK_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")


def _check_mark_id(value: str | None) -> None:
    if value is None or not _MARK_ID.fullmatch(value):
        raise ValueError("'id' must be 1-40 characters of A-Z a-z 0-9 _ -")


def _check_points(points: list, least: int, most: int) -> None:
    # Normalized to the video frame: coordinates only, so a bool or a string is refused too.
    if not least <= len(points) <= most:
        raise ValueError(f"'points' must hold {least} to {most} points")
    for point in points:
        if type(point) is not list or len(point) != 2:
            raise ValueError("'points' must be [x, y] pairs")
        for v in point:
            if type(v) not in (int, float) or not 0 <= v <= 1:
                raise ValueError("'points' coordinates must be numbers from 0 to 1")


@dataclass(slots=True)
class Annotation:
    """Telestration from a specialist to the nurse's screen: a stroke, a pointer, undo or
    clear, in coordinates normalized to the video frame (docs/protocol.md §6.11)."""

    type: ClassVar[str] = "annotation"
    to: str
    op: DrawOp
    id: str | None = None
    """Chosen by the sender, unique per message: receivers de-duplicate the data-channel and
    signaling copies by it. Required except for ``pointer``."""
    shape: Shape | None = None
    points: list | None = None
    """``[[x, y], ...]``, each 0 to 1, origin at the frame's top left."""
    color: str | None = None
    still: str | None = None
    """The snapshot request whose frozen still the stroke is on; None: the live video."""

    def __post_init__(self) -> None:
        _check_id("to", self.to)
        if self.still is not None:
            _check_id("still", self.still)
        stroke = self.op is DrawOp.STROKE
        if self.op is not DrawOp.POINTER or self.id is not None:
            _check_mark_id(self.id)
        if stroke != (self.shape is not None) or stroke != (self.color is not None):
            raise ValueError("'shape' and 'color' come with a stroke only")
        if self.color is not None and self.color not in PALETTE:
            raise ValueError("'color' must be one of the palette")
        if (self.points is not None) != (stroke or self.op is DrawOp.POINTER):
            raise ValueError("'points' come with a stroke or a pointer only")
        if self.points is not None:
            least = 2 if self.shape in (Shape.ARROW, Shape.CIRCLE) else 1
            _check_points(self.points, least, MAX_POINTS if stroke else 1)


@dataclass(slots=True)
class Freeze:
    """A specialist freezes both screens on a still (``on``) or returns them to live video."""

    type: ClassVar[str] = "freeze"
    to: str
    on: bool
    id: str
    """Unique per message, for de-duplication, like an annotation's."""
    still: str | None = None
    """The ``snapshot_request`` id whose still both sides show; required with ``on``."""

    def __post_init__(self) -> None:
        _check_id("to", self.to)
        _check_mark_id(self.id)
        if self.still is not None:
            _check_id("still", self.still)
        elif self.on:
            raise ValueError("'still' is required to freeze")


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

_CLASSES: tuple[type[Any], ...] = (
    Join,
    Offer,
    Answer,
    Candidate,
    EndOfCandidates,
    IceRestart,
    Leave,
    Chat,
    SnapshotRequest,
    VideoProfileMessage,
    Annotation,
    Freeze,
)

# W3C camelCase on the wire, snake_case in Python.
_WIRE_NAMES = {"sdpMid": "sdp_mid", "sdpMLineIndex": "sdp_mline_index"}
_PY_NAMES = {py: wire for wire, py in _WIRE_NAMES.items()}


@dataclass(frozen=True, slots=True)
class _Field:
    python: str
    wire: str
    accepted: tuple[type, ...]
    """The Python types the field may hold (``NoneType`` for optional fields)."""
    exact: frozenset[type]
    """Types a parsed JSON value may have to be taken as it is: JSON gives exact builtins
    (``bool`` is not ``int`` here), so only enums need :func:`_coerce`."""
    required: bool


@dataclass(frozen=True, slots=True)
class _Spec:
    cls: type[Any]
    fields: dict[str, _Field]
    """By wire name, in the dataclass's order."""
    required: frozenset[str]
    """Python names of the required fields."""


def _build_specs() -> dict[str, _Spec]:
    """Derive each message's field table once, at import, not per frame."""
    specs: dict[str, _Spec] = {}
    for cls in _CLASSES:
        hints = typing.get_type_hints(cls)
        table: dict[str, _Field] = {}
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            args = typing.get_args(hint) or (hint,)
            accepted = tuple(a for a in args if a is not type(None))
            if type(None) in args:
                accepted += (type(None),)
            required = (
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            )
            exact = frozenset(a for a in accepted if not issubclass(a, enum.Enum))
            wire = _PY_NAMES.get(f.name, f.name)
            table[wire] = _Field(f.name, wire, accepted, exact, required)
        specs[cls.type] = _Spec(cls, table, frozenset(f.python for f in table.values() if f.required))
    return specs


_SPECS = _build_specs()
MESSAGE_TYPES = frozenset(_SPECS)


def _coerce(wire_name: str, value: Any, accepted: tuple[type, ...]) -> Any:
    for kind in accepted:
        if kind is type(None):
            if value is None:
                return None
        elif issubclass(kind, enum.Enum):
            try:
                return kind(value)
            except ValueError:
                pass
        # bool is an int in Python; on the wire it is not.
        elif kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        elif kind is not int and isinstance(value, kind):
            return value
    names = "/".join("null" if k is type(None) else k.__name__ for k in accepted)
    raise ProtocolError(ErrorCode.BAD_MESSAGE, f"'{wire_name}' must be {names}")


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
    kind = data.pop("type", None)
    if type(kind) is not str:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "'type' is required")
    spec = _SPECS.get(kind)
    if spec is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, "unknown message type", kind[:40])
    fields = spec.fields
    kwargs: dict[str, Any] = {}
    for wire_name, value in data.items():
        entry = fields.get(wire_name)
        if entry is None:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"unexpected field '{wire_name[:40]}'", kind)
        kwargs[entry.python] = value if type(value) in entry.exact else _coerce(wire_name, value, entry.accepted)
    if not spec.required <= kwargs.keys():
        missing = next(f.wire for f in fields.values() if f.required and f.python not in kwargs)
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"'{missing}' is required", kind)
    try:
        return spec.cls(**kwargs)
    except ProtocolError as exc:
        exc.ref = exc.ref or kind
        raise
    except ValueError as exc:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, str(exc), kind) from None


def to_wire(message: ClientMessage) -> dict[str, Any]:
    """The wire form of a client message (what a client sends)."""
    data: dict[str, Any] = {"type": message.type}
    for field in _SPECS[message.type].fields.values():
        value = getattr(message, field.python)
        if value is not None:
            data[field.wire] = value.value if isinstance(value, enum.Enum) else value
    return data


def dumps(frame: dict[str, Any]) -> str:
    return orjson.dumps(frame).decode()


def error_frame(code: ErrorCode, message: str, ref: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": code.value, "message": message}
    if ref is not None:
        frame["ref"] = ref
    return frame


def relay_frame(message: ClientMessage, sender: str) -> dict[str, Any]:
    """A client message as the addressee receives it: the same fields plus ``from``."""
    frame = to_wire(message)
    frame["from"] = sender
    return frame
