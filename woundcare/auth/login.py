"""Password login with brute-force protection.

Every attempt is counted *before* its password is checked, in one atomic step (an
``UPDATE ... SET failed_logins = failed_logins + 1 ... RETURNING`` for an existing account;
the :mod:`.failures` ledger for a name without one), so parallel tries cannot slip past a
count that none of them had added to yet. The count is cleared by a successful login.

Per account: from the ``throttle_after``-th attempt in a row each next one must wait (1 s,
2 s, 4 s... after the last failure); one attempt at a time holds the wait, so a burst gets
one try through. Past ``lock_after`` attempts the account is locked for ``lock_minutes``.
Names without an account get the same answers from the same rules, so the throttle does not
tell which names exist. Per address: more than ``address_limit`` failed (or still running)
attempts in 10 minutes are refused. Every outcome but the address refusal is audited.
Unknown usernames cost the same Argon2 work as known ones, so timing does not tell them apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime

from ..audit.log import AuditEntry, AuditLog, Outcome
from ..db.database import Database
from ..db.engine import is_sqlite
from ..db.models import User
from ..errors import WoundcareError
from ..records.accounts import Accounts
from .failures import FailureLedger
from .passwords import hash_password, verify_password
from .subject import Subject
from .totp import TotpBox

_ADDRESS_WINDOW = 600.0
_CHECK_SECONDS = 30.0
"""Longer than a password check takes, however loaded the server."""


class LoginError(WoundcareError):
    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def headers(self) -> Mapping[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    throttle_after: int = 3
    throttle_base_seconds: float = 1.0
    lock_after: int = 10
    lock_minutes: int = 15
    address_limit: int = 50


@dataclass(frozen=True, slots=True)
class _Attempt:
    """One attempt, counted: its number in the run since the last success, and the account
    it names (``None`` for a name without one)."""

    username: str
    number: int
    locked_for: float
    """Seconds left of a lock in force when the attempt was counted (0.0: none)."""
    user: User | None


class Login:
    def __init__(
        self, db: Database, audit: AuditLog, totp: TotpBox, policy: LoginPolicy, failures: FailureLedger
    ) -> None:
        self._accounts = Accounts(db)
        self._audit = audit
        self._totp = totp
        self._policy = policy
        self._failures = failures
        self._dummy_hash = hash_password("not a real password")
        # SQLite has one writer at a time: a burst of attempts queues here, in order, rather
        # than on the file lock, whose busy timeout the end of a long queue would outlast.
        self._writing: AbstractAsyncContextManager[object] = asyncio.Lock() if is_sqlite(db.url) else nullcontext()

    async def take_try(self, kind: str, address: str | None) -> str:
        """Count one try of another secret that opens something without a login (``kind``: a
        guest link's code; an API token, counted only once refused) from ``address``, under
        the same per-address limit as passwords but counted apart: a ticket for
        :meth:`give_back_try` when it succeeds, else :class:`LoginError` 429. A flood of wrong
        codes stops here, before the audit log."""
        ticket = await self._failures.take_address(f"{kind}:{address or '-'}", _ADDRESS_WINDOW, self._policy.address_limit)
        if ticket is None:
            raise LoginError(429, "throttled", "too many failed tries from this address", int(_ADDRESS_WINDOW))
        return ticket

    async def give_back_try(self, kind: str, address: str | None, ticket: str) -> None:
        await self._failures.give_back_address(f"{kind}:{address or '-'}", ticket)

    async def password(self, username: str, password: str, totp: str | None, address: str | None) -> User:
        """The user these credentials open, or :class:`LoginError`."""
        key = address or "-"
        ticket = await self._failures.take_address(key, _ADDRESS_WINDOW, self._policy.address_limit)
        if ticket is None:
            raise LoginError(429, "throttled", "too many failed logins from this address", int(_ADDRESS_WINDOW))
        outcomes: list[tuple[Outcome, str]] = []
        attempt: _Attempt | None = None
        error: LoginError | None = None
        try:
            attempt = await self._count(username)
            error = await self._check(attempt, password, totp, outcomes)
        finally:
            # Only a checked password that was wrong counts against the address.
            if error is None or error.code not in ("invalid_credentials", "invalid_totp"):
                await self._failures.give_back_address(key, ticket)
        assert attempt is not None
        user = attempt.user
        for outcome, action in outcomes:
            await self._audit.record(
                AuditEntry(action, outcome, actor=Subject.user_ref(user.id) if user else None, address=address)
            )
        if error is not None:
            raise error
        assert user is not None
        return user

    async def close(self) -> None:
        await self._failures.close()

    async def _count(self, username: str) -> _Attempt:
        now = datetime.now(UTC)
        async with self._writing:
            user = await self._accounts.count_attempt(username, now)
        if user is not None:
            locked_for = (user.locked_until - now).total_seconds() if user.locked_until is not None else 0.0
            return _Attempt(username, user.failed_logins, max(locked_for, 0.0), user)
        number, left = await self._failures.count_name(username)
        return _Attempt(username, number, left if number > self._policy.lock_after else 0.0, None)

    async def _check(
        self, attempt: _Attempt, password: str, totp: str | None, outcomes: list[tuple[Outcome, str]]
    ) -> LoginError | None:
        policy = self._policy
        user = attempt.user
        if attempt.locked_for > 0 or attempt.number > policy.lock_after:
            # Past the limit with no lock yet: a parallel attempt has not set it; this one does.
            retry = attempt.locked_for if attempt.locked_for > 0 else await self._lock(attempt)
            outcomes.append((Outcome.LOCKED, "login"))
            return LoginError(403, "account_locked", "too many failed logins; try again later", int(retry) + 1)
        if attempt.number >= policy.throttle_after:
            # Held while the password is checked too (a failure sets the wait proper), so a
            # slow check cannot let the next parallel try through.
            wait = await self._failures.take_wait(attempt.username, self._delay(attempt.number) + _CHECK_SECONDS)
            if wait > 0 and attempt.number > policy.throttle_after:
                outcomes.append((Outcome.THROTTLED, "login"))
                return LoginError(429, "throttled", "too many failed logins; wait before trying again", int(wait) + 1)
        stored = user.password_hash if user is not None and user.password_hash else self._dummy_hash
        ok = await asyncio.to_thread(verify_password, stored, password)
        if user is None or not user.active or user.password_hash is None or not ok:
            outcomes.append((Outcome.FAILED, "login"))
            await self._failed(attempt, outcomes)
            return LoginError(401, "invalid_credentials", "wrong username or password")
        if user.totp_secret_sealed is not None:
            if not totp:
                # The right password is no failure: the code comes in the next request.
                async with self._writing:
                    await self._accounts.uncount_attempt(user.id)
                await self._failures.forget(attempt.username)
                return LoginError(401, "totp_required", "enter the code from your authenticator app")
            if not self._totp.verify(user.id, user.totp_secret_sealed, totp):
                outcomes.append((Outcome.FAILED, "login.totp"))
                await self._failed(attempt, outcomes)
                return LoginError(401, "invalid_totp", "the code is wrong or has expired")
        async with self._writing:
            await self._accounts.clear_failures(user.id)
        await self._failures.forget(attempt.username)
        outcomes.append((Outcome.OK, "login"))
        return None

    def _delay(self, failures: int) -> float:
        excess = failures - self._policy.throttle_after
        return self._policy.throttle_base_seconds * (2 ** min(excess, 10)) if excess >= 0 else 0.0

    async def _failed(self, attempt: _Attempt, outcomes: list[tuple[Outcome, str]]) -> None:
        if attempt.number >= self._policy.lock_after:
            await self._lock(attempt)
            outcomes.append((Outcome.LOCKED, "login"))
        elif attempt.number >= self._policy.throttle_after:
            await self._failures.set_wait(attempt.username, self._delay(attempt.number))

    async def _lock(self, attempt: _Attempt) -> float:
        """Lock the account (or the name) unless a lock is already in force; its seconds."""
        seconds = self._policy.lock_minutes * 60.0
        if attempt.user is None:
            await self._failures.keep_name(attempt.username, seconds)
            return seconds
        async with self._writing:
            await self._accounts.lock(attempt.user.id, seconds)
        return seconds
