"""The one error of authentication: credentials were offered, and they are no good."""

from __future__ import annotations

from ..errors import WoundcareError


class AuthenticationError(WoundcareError):
    """``code`` is ``token_invalid`` or ``token_expired`` (401 on HTTP, an error frame on
    ``/ws``); the message names the rule, never the token."""

    status = 401

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
