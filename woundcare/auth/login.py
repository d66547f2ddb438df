"""Password login with brute-force protection.

Per account: after ``throttle_after`` failures in a row each next try must wait (1 s, 2 s,
4 s...), and after ``lock_after`` the account is locked for ``lock_minutes``. Per address:
more than ``address_limit`` failures in 10 minutes are refused. Every outcome is audited.
The waits and address counts are kept in a :mod:`.failures` ledger (Redis when several
instances share the load, so that each does not grant its own budget).
Unknown usernames cost the same Argon2 work as known ones, so timing does not tell them apart.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from ..audit.log import AuditEntry, AuditLog, Outcome
from ..db.database import Database
from ..db.models import User
from .failures import FailureLedger
from .passwords import hash_password, verify_password
from .totp import TotpBox

_ADDRESS_WINDOW = 600.0


class LoginError(Exception):
    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    throttle_after: int = 3
    throttle_base_seconds: float = 1.0
    lock_after: int = 10
    lock_minutes: int = 15
    address_limit: int = 50


class Login:
    def __init__(
        self, db: Database, audit: AuditLog, totp: TotpBox, policy: LoginPolicy, failures: FailureLedger
    ) -> None:
        self._db = db
        self._audit = audit
        self._totp = totp
        self._policy = policy
        self._failures = failures
        self._dummy_hash = hash_password("not a real password")

    async def password(self, username: str, password: str, totp: str | None, address: str | None) -> User:
        """The user these credentials open, or :class:`LoginError`."""
        key = address or "-"
        await self._check_address(key)
        outcomes: list[tuple[Outcome, str]] = []
        error: LoginError | None = None
        # Failure counters must commit, so errors are raised only after the transaction.
        async with self._db.sessions() as session, session.begin():
            user = await session.scalar(select(User).where(User.username == username))
            error = await self._check(user, password, totp, outcomes)
            if error is not None and error.code in ("invalid_credentials", "invalid_totp"):
                await self._failures.add_address_failure(key, _ADDRESS_WINDOW)
        for outcome, action in outcomes:
            await self._audit.record(
                AuditEntry(action, outcome, actor=f"u{user.id}" if user else None, address=address)
            )
        if error is not None:
            raise error
        assert user is not None
        return user

    async def _check(
        self, user: User | None, password: str, totp: str | None, outcomes: list[tuple[Outcome, str]]
    ) -> LoginError | None:
        now = datetime.now(UTC)
        if user is not None and user.locked_until is not None and user.locked_until > now:
            outcomes.append((Outcome.LOCKED, "login"))
            retry = int((user.locked_until - now).total_seconds()) + 1
            return LoginError(403, "account_locked", "too many failed logins; try again later", retry)
        if user is not None and (wait := await self._throttle_wait(user)) > 0:
            outcomes.append((Outcome.THROTTLED, "login"))
            return LoginError(429, "throttled", "too many failed logins; wait before trying again", int(wait) + 1)
        stored = user.password_hash if user is not None and user.password_hash else self._dummy_hash
        ok = await asyncio.to_thread(verify_password, stored, password)
        if user is None or not user.active or user.password_hash is None or not ok:
            outcomes.append((Outcome.FAILED, "login"))
            if user is not None and await self._fail(user):
                outcomes.append((Outcome.LOCKED, "login"))
            return LoginError(401, "invalid_credentials", "wrong username or password")
        if user.totp_secret_sealed is not None:
            if not totp:
                return LoginError(401, "totp_required", "enter the code from your authenticator app")
            if not self._totp.verify(user.id, user.totp_secret_sealed, totp):
                outcomes.append((Outcome.FAILED, "login.totp"))
                if await self._fail(user):
                    outcomes.append((Outcome.LOCKED, "login"))
                return LoginError(401, "invalid_totp", "the code is wrong or has expired")
        user.failed_logins = 0
        user.locked_until = None
        await self._failures.forget(user.id)
        outcomes.append((Outcome.OK, "login"))
        return None

    async def close(self) -> None:
        await self._failures.close()

    async def _check_address(self, key: str) -> None:
        if await self._failures.address_failures(key, _ADDRESS_WINDOW) >= self._policy.address_limit:
            raise LoginError(429, "throttled", "too many failed logins from this address", int(_ADDRESS_WINDOW))

    def _delay(self, failures: int) -> float:
        excess = failures - self._policy.throttle_after
        return self._policy.throttle_base_seconds * (2 ** min(excess, 10)) if excess >= 0 else 0.0

    async def _throttle_wait(self, user: User) -> float:
        delay = self._delay(user.failed_logins)
        last = await self._failures.last_failure(user.id) if delay else None
        if last is None:
            return 0.0
        return max(0.0, last + delay - time.time())

    async def _fail(self, user: User) -> bool:
        """Count a failure; True if it locks the account."""
        user.failed_logins += 1
        if user.failed_logins < self._policy.lock_after:
            await self._failures.set_last_failure(user.id, time.time(), self._delay(user.failed_logins))
            return False
        user.locked_until = datetime.now(UTC) + timedelta(minutes=self._policy.lock_minutes)
        user.failed_logins = 0
        await self._failures.forget(user.id)
        return True
