"""The specialist's strokes on the head camera: the ``annotation`` and ``freeze`` frames
(issue 17, ``docs/protocol.md``), read from the telestration data channel and from the
signaling socket, de-duplicated, and kept as the :class:`Board` the device's display shows.

The specialist's page sends strokes, undo, clear and freeze down both paths (the channel for
latency, signaling as the fallback and the record), so every such message carries an ``id``
and whichever copy arrives first is applied; the other is ignored. A pointer travels one path
only and has no id.

A frame that does not fit is ignored and counted, and the log names the rule it broke, never
its content: a frame is the specialist's input, and could be anything.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from pydantic import Field, StrictBool, StringConstraints, model_validator

from signaling.protocol import MAX_POINTS, Color, DrawOp, Shape

from ..errors import InvalidInput
from ..validation import StrictObject, number, parse

log = logging.getLogger(__name__)

POINTER_SECONDS = 2.0
"""How long a pointer dot stays."""
MAX_STROKES = 2000
"""Kept per camera run; the oldest go first (a call never draws this many)."""
MAX_SEEN = 10_000
"""Message ids remembered for de-duplication: far more than one call sends, so a copy that
arrives late on the slower path still finds its twin."""
MAX_STILLS = 4
"""Frozen stills kept for the display: the specialist freezes on the latest request."""


MessageId = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9_-]{1,40}$")]
"""Chosen by the sender, unique per message."""
StillId = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9_-]{1,64}$")]
"""A ``snapshot_request`` id (the protocol's id pattern)."""
ParticipantId = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Coordinate = Annotated[float, number(0, 1)]
Point = tuple[Coordinate, Coordinate]
"""Normalized to the video frame: (0, 0) top left, (1, 1) bottom right."""

FRAME_RULES = {
    "object": "a frame must be a JSON object",
    "unknown_field": "only {fields} are known",
    "lacks": "'{field}' is required",
    "string_pattern_mismatch": "'{field}' must match {pattern}",
    "missing": "'{where}' is missing",
    "string_type": "'{field}' must be a string",
    "enum": "'{field}' must be one of {expected}",
    "literal_error": "'{field}' must be {expected}",
    "bool_type": "'{field}' must be true or false",
    "number": "'{where}' must be a number from {low} to {high}",
    "too_short": "'{where}' must hold at least {min_length}",
    "too_long": "'{where}' must hold at most {max_length}",
    "tuple_type": "'{where}' must be an array",
    "list_type": "'{where}' must be an array",
    "value_error": "{error}",
}
"""Why a frame was ignored, for the camera's log; none of these repeats the input."""


class _Relayed(StrictObject):
    """What the server adds or keeps on a signaling copy; a channel copy has neither."""

    to: ParticipantId | None = None
    """The nurse, as the sender addressed the signaling copy."""
    sender: ParticipantId | None = Field(None, alias="from")
    """Added by the server; the camera takes the sender from here on a signaling copy, and
    from the channel's viewer on a channel copy."""


class Annotation(_Relayed):
    type: Literal["annotation"]
    op: DrawOp
    id: MessageId | None = None
    """Required except for a pointer."""
    shape: Shape | None = None
    points: Annotated[tuple[Point, ...], Field(min_length=1, max_length=MAX_POINTS)] | None = None
    color: Color | None = None
    still: StillId | None = None
    """The frozen still the stroke is drawn on; ``None``: the live video."""

    @model_validator(mode="after")
    def _fields_of_op(self) -> Annotation:
        needed = {
            DrawOp.STROKE: ("id", "shape", "points", "color"),
            DrawOp.POINTER: ("points",),
            DrawOp.UNDO: ("id",),
            DrawOp.CLEAR: ("id",),
        }[self.op]
        for name in needed:
            if getattr(self, name) is None:
                raise ValueError(f"'{name}' is required for op {self.op.value}")
        if self.op is DrawOp.POINTER and self.points is not None and len(self.points) != 1:
            raise ValueError("a pointer is one point")
        return self


class Freeze(_Relayed):
    type: Literal["freeze"]
    on: StrictBool
    id: MessageId
    still: StillId | None = None

    @model_validator(mode="after")
    def _still_when_on(self) -> Freeze:
        if self.on and self.still is None:
            raise ValueError("'still' is required when 'on' is true")
        return self


Message = Annotation | Freeze
_MODELS: dict[object, type[Annotation] | type[Freeze]] = {"annotation": Annotation, "freeze": Freeze}


def read(frame: object) -> Message:
    """``frame`` (a decoded JSON value) as a message, or :class:`InvalidInput` naming the rule."""
    if not isinstance(frame, dict):
        raise InvalidInput(FRAME_RULES["object"])
    model = _MODELS.get(frame.get("type"))
    if model is None:
        raise InvalidInput("'type' must be annotation or freeze")
    return parse(model, frame, FRAME_RULES)


def wire(message: Message, sender: str) -> dict[str, Any]:
    """The message as the spec writes it, from ``sender`` and without ``to``: one
    ``--overlay-events`` line."""
    data = message.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"to", "sender"})
    data["from"] = sender
    return data


@dataclass(frozen=True, slots=True)
class Stroke:
    id: str
    sender: str
    shape: Shape
    points: tuple[Point, ...]
    color: Color
    still: str | None


@dataclass(frozen=True, slots=True)
class Scene:
    """What the display shows at one moment."""

    strokes: tuple[Stroke, ...]
    """The shown layer's strokes, oldest first (drawn in that order)."""
    pointer: Point | None
    frozen: str | None
    """The still the display is frozen on; ``None``: live video."""
    still: bytes | None
    """That still's JPEG, once the camera has taken it."""


class Board:
    """Strokes per layer (live, or one frozen still), the freeze and the pointer, changed by
    :meth:`apply` the way the nurse's page changes its canvas."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        """Seconds, for the pointer's time (``time.monotonic``)."""
        self._strokes: list[Stroke] = []
        self.frozen: str | None = None
        self._pointer: tuple[Point, str | None, float] | None = None
        """Where, on which layer, until when."""
        self._stills: OrderedDict[str, bytes] = OrderedDict()

    def apply(self, message: Message, sender: str) -> bool:
        """Apply one (new) message; False when it changed nothing (an undo with nothing left)."""
        if isinstance(message, Freeze):
            frozen = message.still if message.on else None
            changed = frozen != self.frozen
            self.frozen = frozen
            return changed
        if message.op is DrawOp.POINTER:
            assert message.points is not None
            self._pointer = (message.points[0], message.still, self.clock() + POINTER_SECONDS)
            return True
        if message.op is DrawOp.STROKE:
            assert message.id and message.shape and message.points and message.color
            self._strokes.append(
                Stroke(message.id, sender, message.shape, message.points, message.color, message.still)
            )
            del self._strokes[:-MAX_STROKES]
            return True
        on_layer = [s for s in self._strokes if s.still == message.still]
        if message.op is DrawOp.UNDO:
            on_layer = [s for s in on_layer if s.sender == sender][-1:]
        for stroke in on_layer:
            self._strokes.remove(stroke)
        return bool(on_layer)

    def keep_still(self, request: str, jpeg: bytes) -> bool:
        """Keep the still taken for ``request``; True if the display is frozen on it."""
        self._stills[request] = jpeg
        self._stills.move_to_end(request)
        while len(self._stills) > MAX_STILLS:
            self._stills.popitem(last=False)
        return request == self.frozen

    def pointer_until(self) -> float | None:
        """When the pointer shown now goes (on the board's clock)."""
        return self._pointer[2] if self._pointer and self._pointer[2] > self.clock() else None

    def scene(self) -> Scene:
        # A pointer shows on the layer it was aimed at, as a stroke does.
        shown = self._pointer is not None and self._pointer[1] == self.frozen and self.pointer_until() is not None
        pointer = self._pointer[0] if shown and self._pointer else None
        return Scene(
            strokes=tuple(s for s in self._strokes if s.still == self.frozen),
            pointer=pointer,
            frozen=self.frozen,
            still=self._stills.get(self.frozen) if self.frozen else None,
        )


Listener = Callable[[dict[str, Any]], None]
"""Told each applied message as its :func:`wire` object, on the event loop: must not block."""


class Telestration:
    """The camera's receiver: both paths in, de-duplicated, applied to one :class:`Board`."""

    def __init__(self, board: Board | None = None) -> None:
        self.board = board or Board()
        self.listeners: list[Listener] = []
        self.on_change: list[Callable[[], None]] = []
        """Told whenever what the display shows changed (a message, or a frozen still taken)."""
        self.applied = 0
        self.duplicates = 0
        self.rejected = 0
        """Frames ignored because they did not fit (bad JSON, a broken rule, no sender)."""
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    def from_channel(self, viewer: str, data: str | bytes) -> None:
        """A message on ``viewer``'s telestration channel."""
        try:
            frame = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._reject("not JSON")
            return
        self.receive(frame, viewer)

    def from_signaling(self, frame: dict[str, Any]) -> None:
        """An ``annotation`` or ``freeze`` frame relayed by the server (with ``from``)."""
        sender = frame.get("from")
        if not isinstance(sender, str):
            self._reject("a relayed frame names its sender")
            return
        self.receive(frame, sender)

    def receive(self, frame: object, sender: str) -> None:
        try:
            message = read(frame)
        except InvalidInput as exc:
            self._reject(str(exc))
            return
        if message.id is not None:
            key = (sender, message.id)
            if key in self._seen:
                self.duplicates += 1
                return
            self._seen[key] = None
            while len(self._seen) > MAX_SEEN:
                self._seen.popitem(last=False)
        if not self.board.apply(message, sender):
            return
        self.applied += 1
        if not (isinstance(message, Annotation) and message.op is DrawOp.POINTER):
            log.info("telestration: %s", _summary(message))  # never the coordinates
        self._changed()
        event = wire(message, sender)
        for listener in self.listeners:
            listener(event)

    def keep_still(self, request: str, jpeg: bytes) -> None:
        """The still the camera took for ``request``: what a freeze on it shows."""
        if self.board.keep_still(request, jpeg):
            self._changed()

    def _changed(self) -> None:
        for callback in self.on_change:
            callback()

    def _reject(self, rule: str) -> None:
        self.rejected += 1
        log.warning("telestration frame ignored: %s", rule)


def _summary(message: Message) -> str:
    if isinstance(message, Freeze):
        return "freeze on" if message.on else "freeze off"
    return f"{message.op.value}/{message.shape.value}" if message.shape else message.op.value
