"""Request bodies: read as JSON with a size cap, then checked as pydantic models.

The models of the API's small bodies live here, one per request shape, checked by
:func:`woundcare.validation.parse`; records with their own wire format (assessments,
annotations, quality samples) are parsed by their records module. Errors echo nothing.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import orjson
from aiohttp import web
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from ..db.models import ConsultationKind, GuestKind, Urgency
from ..errors import InvalidInput
from ..records.patients import BadNationalId, normalize_national_id
from ..validation import number, optional_text, parse, text
from .errors import api_error

MAX_JSON_BYTES = 64 * 1024
MAX_PASSWORD_CHARS = 1024
MAX_QUESTION_CHARS = 2000

M = TypeVar("M", bound=BaseModel)


async def json_body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise api_error(413, "too_large", f"JSON bodies are limited to {MAX_JSON_BYTES} bytes")
    raw = await request.content.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise api_error(413, "too_large", f"JSON bodies are limited to {MAX_JSON_BYTES} bytes")
    try:
        data = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        raise api_error(400, "bad_json", "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise api_error(400, "bad_json", "body must be a JSON object")
    return data


async def read_body(request: web.Request, model: type[M]) -> M:
    """The request's JSON body as ``model``; ``400 bad_request`` naming the first broken rule."""
    return body_as(model, await json_body(request))


def body_as(model: type[M], data: dict[str, Any]) -> M:
    """A body already read (:func:`json_body`) as ``model``, with :func:`read_body`'s errors."""
    try:
        return parse(model, data)
    except InvalidInput as exc:
        raise api_error(400, exc.code, str(exc)) from None


def _password(value: object) -> str:
    # Any unusable password is told as missing: the answer says nothing of its shape.
    if not isinstance(value, str) or not value or len(value) > MAX_PASSWORD_CHARS:
        raise PydanticCustomError("missing", "required")
    return value


class Login(BaseModel):
    username: Annotated[str, text(64)]
    password: Annotated[str, BeforeValidator(_password)]
    totp: Annotated[str | None, BeforeValidator(lambda value: value if isinstance(value, str) else None)] = None
    """A second-factor code; anything but text counts as none given."""


NATIONAL_ID_CHARS = 20
"""11 digits and room for the spacing people type them with; the number's own rules are
checked right after the text (:func:`woundcare.records.patients.normalize_national_id`)."""


def _national_id(value: str) -> str:
    # Checked with the number, before the fields after it (the form's order): a bad number
    # is told as bad_national_id whatever the name is.
    try:
        return normalize_national_id(value)
    except BadNationalId:
        raise PydanticCustomError("national_id", "a valid identity number") from None


class NationalIdLookup(BaseModel):
    """A national id to find a patient by: in a body, never in a URL. Checked in the order
    of the registration form: the region (by :func:`~woundcare.api.regions.read_regional_body`,
    before all else), then the identity number, its shape and control digits, then
    :class:`NewPatient`'s name; the first broken one is the one told."""

    region: Annotated[str, text(32)]
    national_id: Annotated[str, text(NATIONAL_ID_CHARS), AfterValidator(_national_id), Field(alias="nationalId")]


class NewPatient(NationalIdLookup):
    name: Annotated[str, text(200)]
    municipality: Annotated[str | None, optional_text(64)] = None


class NewConsultation(BaseModel):
    patient: Annotated[str, text(40)]
    """The patient's pseudonym."""
    kind: Annotated[ConsultationKind, Field(alias="channel")] = ConsultationKind.VIDEO
    """A live call (``video``) or store-and-forward (``econsult``)."""
    question: Annotated[str | None, optional_text(MAX_QUESTION_CHARS)] = None
    """An e-consult's question to the specialist (required for one, refused for a call)."""
    urgency: Urgency | None = None
    """An e-consult's urgency (required for one, refused for a call)."""


class GuestInvitationBody(BaseModel):
    kind: GuestKind
    """Who the guest is: shown to the others in the call in place of a name, which is not asked."""


class GuestJoin(BaseModel):
    code: Annotated[str | None, optional_text(100)] = None
    """The one-time link's code, on the first visit only; later the guest cookie speaks."""


class NewDevice(BaseModel):
    region: Annotated[str, text(32)]
    user: Annotated[str, text(64)]
    """The nurse who carries it (a username)."""
    name: Annotated[str, text(100)]


class RegionChoice(BaseModel):
    region: Annotated[str, text(32)]


class Travel(BaseModel):
    region: Annotated[str, text(32)]
    municipality: Annotated[str, text(64)]
    km: Annotated[float, number(0, 2000)]
    """The round trip from the municipality to the region's hospital."""
    hours: Annotated[float, number(0, 48)]
