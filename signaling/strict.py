"""What clients send, as pydantic v2 models, with errors told in our own words.

The one way both of the server's client formats are checked: the signaling frames
(:mod:`signaling.protocol`) and the API's request bodies (:mod:`woundcare.validation`, which
imports this module; ``signaling`` imports nothing of ``woundcare``).

- A model is a :class:`StrictModel`: exact JSON types (no ``true`` for an integer, no ``1.0``
  either), no field the model does not define, frozen once read.
- A field's limits are pydantic constraints (checked in pydantic-core, not per frame in
  Python); the words a broken limit is told in are a :class:`Rule` beside them.
- An error is told by :func:`describe` from a table of templates, never from pydantic's own
  text, which may quote the input (``input_value=...``) and so patient data.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

CONSTRAINT_ERRORS = frozenset(
    {
        "string_too_short",
        "string_too_long",
        "string_pattern_mismatch",
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "too_short",
        "too_long",
    }
)
"""pydantic's error types for a value of the right type that breaks a field's limit."""


class StrictModel(BaseModel):
    """A JSON object of exactly the model's fields, each of its exact JSON type.

    Python code builds one by its snake_case names; a client's JSON is read by the wire
    names (aliases) only (``model_validate(data, by_name=False)``), so ``sdp_mid`` on the
    wire is an unexpected field, as the format says."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True)


@dataclass(frozen=True, slots=True)
class Rule:
    """The rule a field's constraints keep, in the words an error tells it:
    ``Annotated[int, Field(ge=0, lt=64), Rule("'{field}' must be 0-63")]``.

    ``{field}`` is the field's wire name; ``code`` is the format's own error code for this
    rule where it has one (the protocol version's ``unsupported_version``)."""

    text: str
    code: str | None = None
    on: str | None = None
    """The one constraint error this rule tells, where a field keeps several
    (``string_pattern_mismatch``); ``None``: any. The first that fits is told."""


def rule_of(field: FieldInfo, error_type: str) -> Rule | None:
    """The :class:`Rule` a field declares for ``error_type``, also inside an optional
    (``X | None``)."""
    metadata = list(field.metadata)
    for arg in typing.get_args(field.annotation):
        if typing.get_origin(arg) is Annotated:
            metadata += arg.__metadata__
    return next((item for item in metadata if isinstance(item, Rule) and item.on in (None, error_type)), None)


def type_names(field: FieldInfo) -> str:
    """The field's accepted types as an error names them: ``str``, ``int/null``, ``Role``."""
    args = typing.get_args(field.annotation) if typing.get_origin(field.annotation) is not Annotated else ()
    kinds = [typing.get_args(a)[0] if typing.get_origin(a) is Annotated else a for a in args or (field.annotation,)]
    kinds.sort(key=lambda kind: kind is type(None))
    return "/".join("null" if kind is type(None) else getattr(kind, "__name__", str(kind)) for kind in kinds)


def errors_of(exc: ValidationError) -> list[ErrorDetails]:
    """The errors of a failed validation without the input or pydantic's links."""
    return exc.errors(include_url=False, include_input=False)


def describe(error: ErrorDetails, rules: Mapping[str, str], *, root: str = "", tags: Set[str] = frozenset()) -> str:
    """One error in ``rules``' words: the template for its type.

    A template may use ``{where}`` (the path to the value, ``items[0].start``, or ``root`` for
    the whole), ``{field}`` (its last name), ``{parent}`` (the path to the object holding it)
    and the error's context (``{max_length}``). An error type without a template says only
    where it is. ``tags`` are the tags of tagged unions, which pydantic puts into the path
    after a list index and the client never wrote."""
    loc = [part for i, part in enumerate(error["loc"]) if not (i and isinstance(error["loc"][i - 1], int) and part in tags)]
    names = {
        "where": _path(loc) or root,
        "parent": _path(loc[:-1]) or root,
        "field": str(loc[-1]) if loc else root,
        **{key: str(value) for key, value in error.get("ctx", {}).items()},
    }
    template = rules.get(error["type"], "{where} is not valid")
    return template.format_map(names)


def _path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return path
