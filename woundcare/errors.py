"""The root of every error woundcare raises on purpose, and what each answers with.

Every error carries a stable ``code`` (for clients, the audit log and tests; it never
changes once released), the HTTP ``status`` it answers with at the edge, and a ``message``:
fixed text for a person that names the rule, never the input. An error whose ``message`` is
``None`` is a fault the client cannot act on: it answers ``500 internal`` and is logged.
The one mapping to HTTP is :func:`woundcare.api.errors.http_error`; to a /ws frame (whose
close code the signaling handler chooses by the frame's code) :func:`protocol_error`.

Exception hierarchy::

    WoundcareError                       (code, status, message)
    ├── InvalidInput                     400; also a ValueError; the message names the rule
    │   ├── AssessmentError              400 bad_assessment
    │   ├── BadNationalId                400 bad_national_id; woundcare.records.patients
    │   ├── QualityError                 400 bad_sample
    │   └── BadWebhookUrl                400 bad_webhook_url; woundcare.records.webhooks
    ├── CryptoError                      woundcare.crypto
    │   ├── RecordIntegrityError         500 integrity_error: a record does not open as itself
    │   ├── KeyShreddedError             410 shredded: its region's key was destroyed
    │   ├── MasterKeyError               internal: a master key missing, malformed or wrong
    │   ├── SealError                    internal: a sealed value (TOTP secret, cookie) does not open
    │   └── SignatureError               a webhook signature does not verify (a receiver's check)
    ├── BlobError                        internal; woundcare.storage.blobs
    │   ├── InvalidBlobKey               also a ValueError
    │   ├── BlobExists
    │   └── BlobNotFound
    ├── LoginError                       401/429..., code per refusal; woundcare.auth.login
    ├── AuthenticationError              401 token_invalid | token_expired | dpop_invalid; woundcare.auth.errors
    │   └── InvitationError              an invitation or join token
    ├── OidcError                        woundcare.auth.oidc; ``reason`` goes to the audit log
    │   ├── FlowError                    400 oidc_state
    │   ├── LoginRefused                 401 oidc_failed
    │   ├── TokenError                   401 oidc_invalid_token
    │   ├── ProviderError                502 oidc_provider_error
    │   └── SecurityLevelTooLow          403 oidc_security_level
    ├── ProofError                       401 dpop_invalid; woundcare.auth.dpop, ``reason`` to the audit log
    ├── Denied                           403 forbidden; woundcare.auth.policy
    ├── ConsultationLive                 409 consultation_live, naming the live one
    ├── GuestRefused                     404/409/410, code per refusal; woundcare.records.guests
    ├── AssessmentSigned                 409 signed
    ├── NotSigned                        409 not_signed: no acknowledgement or journal export of a draft
    ├── NoIdentity                       409 no_identity; woundcare.journal.record
    ├── AssessmentChanged                412 precondition_failed
    ├── ImageRejected                    413/415/422, code per reason
    ├── ImageBusy                        503 busy
    ├── NotJpeg                          internal; woundcare.records.jpeg (answered as ImageRejected truncated)
    ├── recording uploads                woundcare.recording.uploads
    │   ├── RecordingBusy                409 recording
    │   ├── NotRecording                 409 not_recording
    │   ├── OtherInstance                409 other_instance
    │   ├── NotTheRecorder               403 not_recorder
    │   ├── OutOfOrder                   409 chunk_order
    │   └── RecordingTooLong             413 recording_too_long
    ├── CliError                         the command line: one line on stderr, exit 2
    └── camera (the client side; never answered over HTTP)
        ├── DeviceError
        ├── SignalingClosed
        └── UploadFailed

``signaling.protocol.ProtocolError`` is not here: signaling never imports woundcare.
"""

from __future__ import annotations

from collections.abc import Mapping

from signaling.protocol import ErrorCode, ProtocolError


class WoundcareError(Exception):
    """Base class of every error woundcare raises on purpose."""

    code: str = "internal"
    """Stable, machine-readable; answered to the client when :attr:`message` is set."""
    status: int = 500
    """The HTTP status this error answers with."""
    message: str | None = None
    """Fixed text for a person (names the rule, never the input); ``None``: an internal fault."""

    @property
    def details(self) -> Mapping[str, str]:
        """Ids beside the code that help the client on (never input echoed back)."""
        return {}

    @property
    def headers(self) -> Mapping[str, str]:
        """HTTP headers the answer carries (``Retry-After``)."""
        return {}


class InvalidInput(WoundcareError, ValueError):
    """Input that breaks a rule. A ValueError too, so parsers keep their contract."""

    code = "bad_request"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def protocol_error(exc: WoundcareError, ref: str | None = None) -> ProtocolError:
    """``exc`` as the /ws error frame: its code if the protocol knows it, else ``internal``."""
    try:
        code = ErrorCode(exc.code)
    except ValueError:
        return ProtocolError(ErrorCode.INTERNAL, "internal error", ref)
    return ProtocolError(code, exc.message or "internal error", ref)
