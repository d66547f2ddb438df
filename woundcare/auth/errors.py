"""The one error of authentication: credentials were offered, and they are no good."""

from __future__ import annotations

from ..errors import WoundcareError


class AuthenticationError(WoundcareError):
    """``code`` is ``token_invalid``, ``token_expired`` or ``dpop_invalid`` (401 on HTTP, an error frame on
    ``/ws``); the message names the rule, never the token."""

    status = 401

    def __init__(self, code: str, message: str, *, reason: str | None = None, scheme: str = "Bearer") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or code
        """A fixed code for the audit log (the API audits every refused token by it)."""
        self.scheme = scheme
        """The ``Authorization`` scheme the refused token belongs under (``Bearer`` or
        ``DPoP``): the challenge of the answer, and the audit entry's family."""
