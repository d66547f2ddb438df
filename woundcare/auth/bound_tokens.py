"""A program's DPoP-bound access token (a journal system acting for a professional) -> the user.

HelseID issues access tokens for our API (``oidc_api_audience``) to journal systems; such a
token names the professional by HPR number. The API takes one only as ``Authorization: DPoP
<token>`` with a proof of the key it is bound to (:class:`.dpop.ProofVerifier`): a token
replayed without that key is refused, and so is a bearer token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..db.models import User
from ..records.accounts import Accounts
from .dpop import ProofError, ProofsOverflow, ProofVerifier
from .errors import AuthenticationError
from .oidc import OidcClient, OidcError


@dataclass(frozen=True, slots=True)
class ProofRequest:
    """The request a proof must name."""

    method: str
    url: str
    """As the program addressed it: the server's public URL and the path."""
    proofs: tuple[str, ...]
    """Every ``DPoP`` header sent (exactly one is allowed)."""


@dataclass(slots=True)
class BoundTokens:
    client: OidcClient
    audience: str
    """The ``aud`` the provider writes in access tokens for this API."""
    proofs: ProofVerifier = field(default_factory=ProofVerifier)

    async def user(self, accounts: Accounts, token: str, request: ProofRequest) -> User:
        """The active user the token acts for; :class:`AuthenticationError` (with a fixed
        ``reason`` for the audit log) for anything less."""
        try:
            access = await self.client.verify_access_token(token, self.audience)
        except OidcError as exc:
            raise AuthenticationError(
                "token_invalid", "access token is not valid here", reason=exc.reason, scheme="DPoP"
            ) from None
        try:
            self.proofs.verify(
                request.proofs, method=request.method, url=request.url, access_token=token, jkt=access.jkt
            )
        except ProofsOverflow:
            raise  # no fault of this token's: answered 503, not refused
        except ProofError as exc:
            raise AuthenticationError(exc.code, exc.message, reason=exc.reason, scheme="DPoP") from None
        user = await accounts.user_by_hpr_number(access.hpr_number) if access.hpr_number else None
        if user is None or not user.active:
            raise AuthenticationError(
                "token_invalid", "no active account for this token", reason="unknown_user", scheme="DPoP"
            )
        return user
