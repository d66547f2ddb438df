"""What clients send to the API, checked by pydantic v2 models, with errors in our own words.

Every JSON shape a client sends is a pydantic model; :func:`parse` is the one way one is
read. Its error is an :class:`~woundcare.errors.InvalidInput` naming where and which rule,
written by :func:`signaling.strict.describe` from a table of templates (the message texts
clients and tests know), never from pydantic's own text, which may quote the input
(``input_value=...``) and so patient data. The signaling frames are checked the same way
(:mod:`signaling.strict`, where the shared pieces live: ``signaling`` imports nothing of
``woundcare``).

Only the first error is told, as a person fixing a form fixes one thing at a time; fields
are checked in the order a model declares them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Set
from typing import TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from signaling.strict import StrictModel, describe, errors_of

from .errors import InvalidInput

M = TypeVar("M", bound=BaseModel)

FIELD_RULES: Mapping[str, str] = {
    "missing": "'{field}' is required",
    "text": "'{field}' must be text of 1-{max_length} characters",
    "number": "'{field}' must be a number from {low} to {high}",
    "national_id": "'{field}' is not a valid Norwegian identity number",
}
"""The rules of request bodies' fields; ``{field}`` is the field's wire name."""

RULE_CODES: Mapping[str, str] = {"national_id": "bad_national_id"}
"""Rules with a code of their own (clients act on it); any other is ``bad_request``."""


class BrokenRule(InvalidInput):
    """Input that breaks a rule with a code of its own (:data:`RULE_CODES`)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def parse(
    model: type[M], data: object, rules: Mapping[str, str] = FIELD_RULES, *, root: str = "", tags: Set[str] = frozenset()
) -> M:
    """``data`` as a ``model``, or :class:`InvalidInput` with the first error in ``rules``' words.

    A template may use ``{where}`` (the path to the value, ``items[0].start``, or ``root`` for
    the whole), ``{field}`` (its last name), ``{parent}`` (the path to the object holding it)
    and the error's context (``{max_length}``). A ``ValueError`` raised by a domain check inside
    the model is told as ``value_error`` with ``{error}``, its own message. An error type
    without a template says only where it is. ``tags`` are the tags of the model's tagged
    unions, which pydantic puts into the path after a list index and the client never wrote.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = errors_of(exc)[0]
        message = describe(error, rules, root=root, tags=tags)
        code = RULE_CODES.get(error["type"])
        raise (BrokenRule(message, code) if code else InvalidInput(message)) from None


def an_object(value: object) -> Mapping[str, object]:
    """``value`` if it is a JSON object, else the ``object`` error."""
    if not isinstance(value, Mapping):
        raise PydanticCustomError("object", "an object")
    return value


class StrictObject(StrictModel):
    """A JSON object of exactly the model's fields (the frames' :class:`StrictModel`): anything
    else, or a field missing, is an error naming the object (``object``, ``unknown_field`` with
    ``{fields}``, ``lacks`` with ``{field}``), checked before any field's value, so the first
    error is about the shape.

    Unlike a signaling frame, its fields say how strict each is (``StrictBool``, a strict
    ``StringConstraints``, :func:`number`): enums are read by value and points as tuples,
    as the formats it reads (annotations, telestration) were written against."""

    model_config = ConfigDict(strict=False)

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: object) -> object:
        data = an_object(data)
        names = sorted(field.alias or name for name, field in cls.model_fields.items())
        if any(key not in names for key in data):
            # The unknown key itself is not told: it is input, and may be long or personal.
            raise PydanticCustomError("unknown_field", "known fields only", {"fields": ", ".join(names)})
        required = (field.alias or name for name, field in cls.model_fields.items() if field.is_required())
        for name in sorted(required):
            if name not in data:
                raise PydanticCustomError("lacks", "a required field", {"field": name})
        return data


def text(max_length: int) -> BeforeValidator:
    """Required text of 1 to ``max_length`` characters, stripped (the limit counts the
    unstripped): ``name: Annotated[str, text(100)]``."""
    return _text(max_length, required=True)


def optional_text(max_length: int) -> BeforeValidator:
    """Like :func:`text`, but absent or null is ``None``: ``Annotated[str | None, optional_text(64)] = None``."""
    return _text(max_length, required=False)


def number(low: float, high: float) -> BeforeValidator:
    """A JSON number (not a boolean) from ``low`` to ``high``, as a float."""

    def check(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise PydanticCustomError("number", "a number from {low} to {high}", {"low": f"{low:g}", "high": f"{high:g}"})
        return float(value)

    return BeforeValidator(check)


def _text(max_length: int, required: bool) -> BeforeValidator:
    def check(value: object) -> str | None:
        if value is None:
            if required:
                raise PydanticCustomError("missing", "required")
            return None
        if not isinstance(value, str) or not value.strip() or len(value) > max_length:
            raise PydanticCustomError("text", "text of 1 to {max_length} characters", {"max_length": max_length})
        return value.strip()

    return BeforeValidator(check)


def is_loopback(url: str) -> bool:
    """Whether ``url``'s host is this machine: where plain http is allowed (tests, a sidecar)
    for the URLs the server calls (the identity provider, webhook receivers)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
