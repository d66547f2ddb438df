"""One error root, one mapping to HTTP and one to /ws frames."""

from __future__ import annotations

import importlib
import pkgutil

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import woundcare
from signaling.protocol import ErrorCode
from woundcare.api.errors import error_middleware, http_error
from woundcare.auth.invitations import InvitationError
from woundcare.auth.login import LoginError
from woundcare.auth.oidc import FlowError, ProviderError
from woundcare.auth.policy import Action, Denied
from woundcare.crypto.errors import RecordIntegrityError, SealError
from woundcare.errors import InvalidInput, WoundcareError, protocol_error
from woundcare.records.assessments import AssessmentChanged, AssessmentError, AssessmentSigned
from woundcare.records.images import ImageRejected, RejectCode
from woundcare.records.quality import QualityError
from woundcare.storage.blobs import BlobNotFound, InvalidBlobKey


def _all_subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    return found.union(*(_all_subclasses(sub) for sub in found))


def _woundcare_exceptions() -> set[type]:
    modules = [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(woundcare.__path__, "woundcare.")
        if not info.name.endswith("__main__")  # runs the command line
    ]
    return {
        value
        for module in modules
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == module.__name__
    }


def test_every_woundcare_exception_has_the_one_root() -> None:
    exceptions = _woundcare_exceptions()
    assert len(exceptions) >= 29
    assert exceptions - _all_subclasses(WoundcareError) == {WoundcareError}


def test_answered_errors_have_a_code_status_and_fixed_message() -> None:
    answered = [cls for cls in _all_subclasses(WoundcareError) if isinstance(cls.message, str)]
    assert answered
    for cls in answered:
        assert cls.code != "internal" and 400 <= cls.status < 600, cls


def _body(exc: web.HTTPException) -> dict[str, str]:
    assert exc.text is not None
    return orjson.loads(exc.text)["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("error", "status", "code", "message"),
    [
        (AssessmentError("'outcome' is required"), 400, "bad_assessment", "'outcome' is required"),
        (QualityError("'rtt' must be a number"), 400, "bad_sample", "'rtt' must be a number"),
        (AssessmentSigned(), 409, "signed", "the assessment is signed and can no longer change"),
        (AssessmentChanged(), 412, "precondition_failed", "the assessment changed since it was read; reload it"),
        (ImageRejected(RejectCode.TOO_LARGE), 413, "too_large", "The file is too large."),
        (ImageRejected(RejectCode.NOT_AN_IMAGE), 415, "not_an_image", "The file is not an image."),
        (ImageRejected(RejectCode.TRUNCATED), 422, "truncated", "The image is incomplete or damaged; please send it again."),
        (InvitationError("token_expired", "token has expired"), 401, "token_expired", "token has expired"),
        (FlowError("state_mismatch"), 400, "oidc_state", "this login attempt is unknown or has expired; start again"),
        (ProviderError("discovery_invalid"), 502, "oidc_provider_error", "the identity provider could not be reached or answered wrongly"),
        (Denied(Action.CONSULTATION_JOIN, 1), 403, "forbidden", "not allowed"),
        (RecordIntegrityError("authentication failed", region_id=1, kind="snapshot", record_id="r1"), 500, "integrity_error", "a stored record failed its integrity check"),
    ],
)
def test_http_error_answers_the_error_s_own_status_code_and_message(
    error: WoundcareError, status: int, code: str, message: str
) -> None:
    answer = http_error(error)
    assert answer.status == status
    assert _body(answer) == {"code": code, "message": message}


def test_http_error_carries_retry_after_and_never_internal_detail() -> None:
    throttled = http_error(LoginError(429, "too_many_attempts", "wait and try again", retry_after=30))
    assert (throttled.status, throttled.headers["Retry-After"]) == (429, "30")
    for internal in (BlobNotFound("abcdefghijklmnop1234"), SealError("authentication failed"), InvalidBlobKey()):
        answer = http_error(internal)
        assert answer.status == 500
        assert _body(answer) == {"code": "internal", "message": "internal server error"}


def test_invalid_input_is_a_value_error() -> None:
    assert issubclass(InvalidInput, ValueError) and issubclass(AssessmentError, ValueError)


def test_protocol_error_keeps_codes_the_wire_knows() -> None:
    expired = protocol_error(InvitationError("token_expired", "token has expired"), "join")
    assert (expired.code, expired.message, expired.ref) == (ErrorCode.TOKEN_EXPIRED, "token has expired", "join")
    denied = protocol_error(Denied(Action.CONSULTATION_JOIN, 1), "join")
    assert (denied.code, denied.message) == (ErrorCode.FORBIDDEN, "not allowed")
    unknown = protocol_error(BlobNotFound("abcdefghijklmnop1234"))
    assert (unknown.code, unknown.message) == (ErrorCode.INTERNAL, "internal error")


async def test_the_middleware_answers_escaped_errors_through_the_one_mapping() -> None:
    async def signed(request: web.Request) -> web.Response:
        raise AssessmentSigned()

    async def missing_blob(request: web.Request) -> web.Response:
        raise BlobNotFound("abcdefghijklmnop1234")

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/api/signed", signed)
    app.router.add_get("/api/blob", missing_blob)
    async with TestClient(TestServer(app)) as client:
        answer = await client.get("/api/signed")
        assert answer.status == 409
        assert (await answer.json())["error"]["code"] == "signed"
        answer = await client.get("/api/blob")
        assert answer.status == 500
        assert await answer.json() == {"error": {"code": "internal", "message": "internal server error"}}
