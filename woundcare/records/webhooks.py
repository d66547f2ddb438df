"""Webhook endpoints and the deliveries of the outbox's events to them (docs/webhooks.md).

Endpoints are added by an admin (``woundcare webhooks add``); each one's ``whsec_`` secret is
made here, shown once, and kept sealed (:mod:`woundcare.crypto.sealing`, under the server
secret's ``Purpose.WEBHOOK_SECRET`` key, bound to the endpoint's id).

Events (:mod:`woundcare.records.events`) are fanned out by the deliverer, not when they are
emitted: the transaction of a join or a signing then only inserts one row, reads nothing,
and an endpoint's filters are applied in one place. A fanned-out event gets one delivery per
endpoint that wants it and, if any does, its JSON body fixed; each delivery is claimed by
one deliverer at a time (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so instances share the
work; SQLite has one writer) with a lease: a deliverer killed mid-send leaves a delivery that
is due again when the lease runs out, sent with the same ``webhook-id`` (at least once).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Unpack

import orjson
from sqlalchemy import Connection, Row, bindparam, delete, exists, func, insert, select, update
from yarl import URL

from ..crypto.errors import SealError
from ..crypto.kdf import Purpose, derive_key
from ..crypto.sealing import seal, unseal
from ..crypto.webhook_signature import new_secret
from ..db.database import Database
from ..db.models import Region, WebhookDelivery, WebhookEndpoint, WebhookEvent
from ..errors import InvalidInput
from ..validation import is_loopback
from .events import EventType

log = logging.getLogger(__name__)

FAN_OUT_WRITE = 100
"""Events fanned out per write at most. The writer is shared with audit appends and joins'
session-log batches, which wait while it runs: 500 events in one write held it 10-75 ms,
100 events 2-12 ms (SQLite and PostgreSQL, with and without an endpoint, on a busy machine),
for a hand-off from the event loop each."""

URL_MAX = 2000
SCHEMES = ("http", "https")


class BadWebhookUrl(InvalidInput):
    code = "bad_webhook_url"


def check_url(url: str) -> str:
    """``url`` if it may be an endpoint: absolute https (http only on loopback), a host, no
    credentials or fragment.

    The secret authenticates us to the receiver; a user name or password in the URL would be
    a second secret kept and shown in plain, so it is refused rather than stored."""
    if len(url) > URL_MAX:
        raise BadWebhookUrl(f"a webhook URL has at most {URL_MAX} characters")
    try:
        parsed = URL(url)
    except ValueError:
        raise BadWebhookUrl("a webhook URL must be a valid URL") from None
    if parsed.scheme not in SCHEMES or not parsed.host:
        raise BadWebhookUrl("a webhook URL is absolute http or https with a host")
    if parsed.scheme == "http" and not is_loopback(url):
        # Events and their signatures would cross the network in clear.
        raise BadWebhookUrl("a webhook URL is https (http only on this machine)")
    if parsed.user is not None or parsed.password is not None:
        raise BadWebhookUrl("a webhook URL carries no user name or password")
    if parsed.fragment:
        raise BadWebhookUrl("a webhook URL has no fragment")
    return url


def event_body(type: EventType | str, at: datetime, data: dict[str, object]) -> bytes:
    """The JSON of an event, in the spec's envelope: ``type``, ``timestamp``, ``data``."""
    name = type.value if isinstance(type, EventType) else type
    return orjson.dumps({"type": name, "timestamp": at.isoformat(), "data": data})


@dataclass(frozen=True, slots=True)
class EndpointView:
    id: int
    url: str
    event_types: tuple[str, ...]
    """Empty: all."""
    region: str | None
    """A region's code; None: all regions."""
    enabled: bool


@dataclass(frozen=True, slots=True)
class Due:
    """A delivery claimed for one attempt."""

    delivery_id: int
    event_id: str
    endpoint_id: int
    url: str
    secret: str
    body: bytes
    attempt: int
    """This attempt's number, from 1."""
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class Pass:
    """What a pass of the deliverer found (:meth:`Webhooks.deliver`)."""

    due: list[Due]
    """Deliveries claimed."""
    next_due: datetime | None
    """When nothing was claimed, when the next delivery is due (None: none is waiting)."""
    looked: bool
    """Whether it claimed and read ``next_due``: False if it only fanned out."""


@dataclass(frozen=True, slots=True)
class Backlog:
    pending: int
    """Deliveries not yet delivered nor failed, and events not yet fanned out."""
    oldest: datetime | None
    """When the oldest of them happened."""


_Row = Row[Unpack[tuple[Any, ...]]]
# What fanning out reads of an event and of an endpoint (:func:`_data`, :func:`_wants`), and
# its write: built once.
_EVENT_COLUMNS = (
    WebhookEvent.id,
    WebhookEvent.type,
    WebhookEvent.consultation_id,
    WebhookEvent.region_id,
    WebhookEvent.subject_id,
    WebhookEvent.status,
    WebhookEvent.occurred_at,
)
_NEW_EVENTS = (
    select(*_EVENT_COLUMNS)
    .where(WebhookEvent.fanned_out_at.is_(None))
    .order_by(WebhookEvent.occurred_at, WebhookEvent.id)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
_ENABLED_ENDPOINTS = select(WebhookEndpoint.id, WebhookEndpoint.event_types, WebhookEndpoint.region_id).where(
    WebhookEndpoint.enabled.is_(True)
)
_FANNED_OUT = (
    update(WebhookEvent)
    .where(WebhookEvent.id == bindparam("event"))
    .values(body=bindparam("fixed_body"), fanned_out_at=bindparam("now"))
)
_UNHEARD = (
    update(WebhookEvent)
    .where(WebhookEvent.id.in_(bindparam("events", expanding=True)))
    .values(fanned_out_at=bindparam("now"))
)
# What claiming reads: the due deliveries' ids (locked, skipping those another instance holds),
# then each one's attempt, event and endpoint; and when the next is due.
_DUE = (
    select(WebhookDelivery.id)
    .where(WebhookDelivery.next_attempt_at <= bindparam("now"))
    .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
_CLAIMED = (
    select(WebhookDelivery.id, WebhookDelivery.attempts, WebhookDelivery.event_id, WebhookDelivery.endpoint_id)
    .add_columns(WebhookEvent.body, WebhookEvent.occurred_at, WebhookEndpoint.url, WebhookEndpoint.secret_sealed)
    .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
    .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
    .where(WebhookDelivery.id.in_(bindparam("ids", expanding=True)))
    .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
)
_NEXT_DUE = select(func.min(WebhookDelivery.next_attempt_at))


class Webhooks:
    def __init__(self, db: Database, server_secret: bytes) -> None:
        self._db = db
        self._key = derive_key(server_secret, Purpose.WEBHOOK_SECRET)
        self._regions: dict[int, str] = {}
        """Region id -> code, for events' bodies; a region's code never changes."""

    # Endpoints

    async def add(self, url: str, event_types: Sequence[EventType], region_id: int | None) -> tuple[EndpointView, str]:
        """A new endpoint and its secret, which is never shown again."""
        secret = new_secret()
        types = " ".join(dict.fromkeys(t.value for t in event_types))
        async with self._db.sessions() as session, session.begin():
            row = WebhookEndpoint(url=check_url(url), secret_sealed=b"", event_types=types, region_id=region_id)
            session.add(row)
            await session.flush()
            # Sealed once the id exists, which it is bound to, in the same transaction.
            row.secret_sealed = seal(self._key, secret.encode(), _aad(row.id))
            code = await session.scalar(select(Region.code).where(Region.id == region_id)) if region_id else None
        return _endpoint(row, code), secret

    async def endpoints(self) -> list[EndpointView]:
        async with self._db.sessions() as session:
            rows = (
                await session.execute(
                    select(WebhookEndpoint, Region.code)
                    .outerjoin(Region, Region.id == WebhookEndpoint.region_id)
                    .order_by(WebhookEndpoint.id)
                )
            ).all()
        return [_endpoint(row, code) for row, code in rows]

    async def endpoint(self, endpoint_id: int) -> tuple[EndpointView, str] | None:
        """An endpoint and its secret (for ``woundcare webhooks test``)."""
        async with self._db.sessions() as session:
            found = (
                await session.execute(
                    select(WebhookEndpoint, Region.code)
                    .outerjoin(Region, Region.id == WebhookEndpoint.region_id)
                    .where(WebhookEndpoint.id == endpoint_id)
                )
            ).one_or_none()
        if found is None:
            return None
        row, code = found
        return _endpoint(row, code), self._secret(row.id, row.secret_sealed)

    async def remove(self, endpoint_id: int) -> bool:
        """Remove an endpoint with its deliveries, done or not; False if there is none."""
        async with self._db.sessions() as session, session.begin():
            await session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id))
            result = await session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def _secret(self, endpoint_id: int, sealed: bytes) -> str:
        return unseal(self._key, sealed, _aad(endpoint_id)).decode()

    # Deliveries: each write is a work of the database's writer (:meth:`Database.write`), Core
    # statements on its connection, so a pass of the deliverer is one hand-off from the event
    # loop (one per FAN_OUT_WRITE events); on SQLite through aiosqlite each statement had been
    # some six, and a pass three transactions.

    async def deliver(self, now: datetime, limit: int, claim: int, lease: timedelta, *, look: bool) -> Pass:
        """Fan up to ``limit`` new events out (:meth:`_fan_out`), then, if ``look`` or the
        fan-out made deliveries, claim up to ``claim`` due ones (:meth:`_claim`) and, if none
        was, read when the next is due. One write, or one per :data:`FAN_OUT_WRITE` events
        while more wait, the last of which claims.

        Not looking spares a pass that cannot find work two statements: one woken by a commit
        of this process whose events made no delivery (no endpoint wants them), while no
        delivery was known to be due; the deliverer's poll looks, for other instances' work."""
        fanned_out = deliveries = 0

        def work(connection: Connection) -> Pass | None:
            nonlocal fanned_out, deliveries
            size = min(FAN_OUT_WRITE, limit - fanned_out)
            events, made = self._fan_out(connection, now, size)
            fanned_out, deliveries = fanned_out + events, deliveries + made
            if events == size and fanned_out < limit:
                return None  # more wait: the writes queued meanwhile go first
            if not (look or deliveries):
                return Pass([], None, looked=False)
            due = self._claim(connection, now, claim, lease)
            return Pass(due, None if due else connection.scalar(_NEXT_DUE), looked=True)

        done = None
        while done is None:
            done = await self._db.write(work)
        return done

    def _fan_out(self, connection: Connection, now: datetime, limit: int) -> tuple[int, int]:
        """Give up to ``limit`` new events a delivery per endpoint that wants them, and those
        some endpoint wants their body; how many events were fanned out, and how many
        deliveries made.

        Columns and Core statements, no ORM objects: every call's start is an event, and a
        burst of them (calls starting again after a restart) is fanned out here by the
        hundred, where loading, tracking and flushing each as an object cost most of a pass."""
        events = connection.execute(_NEW_EVENTS, {"limit": limit}).all()
        if not events:
            return 0, 0
        endpoints = connection.execute(_ENABLED_ENDPOINTS).all()
        deliveries = [
            {"event_id": event.id, "endpoint_id": endpoint.id, "next_attempt_at": now}
            for event in events
            for endpoint in endpoints
            if _wants(endpoint, event)
        ]
        heard = {delivery["event_id"] for delivery in deliveries}
        # Only a delivery reads a body, and no endpoint added later is sent an event fanned
        # out before it: an event none wants (every call's start, on a site without
        # webhooks) is only marked, all of them in one statement, with no JSON made.
        unheard = [event.id for event in events if event.id not in heard]
        if unheard:
            connection.execute(_UNHEARD, {"events": unheard, "now": now})
        if heard:
            self._fix_bodies(connection, [event for event in events if event.id in heard], now)
            connection.execute(insert(WebhookDelivery), deliveries)
        return len(events), len(deliveries)

    def _fix_bodies(self, connection: Connection, events: Sequence[_Row], now: datetime) -> None:
        """Fix each event's JSON body and mark it fanned out, so every retry signs the same bytes."""
        regions = self._regions
        # Read only for a region not seen before: a burst of calls starting (a fan-out after
        # each group commit of the session log) is then one statement fewer each.
        unknown = {e.region_id for e in events if e.region_id is not None and e.region_id not in regions}
        if unknown:
            found = connection.execute(select(Region.id, Region.code).where(Region.id.in_(unknown)))
            regions.update((region_id, code) for region_id, code in found)
        connection.execute(
            _FANNED_OUT,
            [
                {
                    "event": event.id,
                    "fixed_body": event_body(event.type, event.occurred_at, _data(event, regions.get(event.region_id))),
                    "now": now,
                }
                for event in events
            ],
        )

    def _claim(self, connection: Connection, now: datetime, limit: int, lease: timedelta) -> list[Due]:
        """Up to ``limit`` due deliveries, oldest due first, each counted as attempted and not
        due again before ``now + lease`` (by when its attempt has been settled)."""
        ids = connection.scalars(_DUE, {"now": now, "limit": limit}).all()
        if not ids:
            return []
        connection.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(ids))
            .values(attempts=WebhookDelivery.attempts + 1, next_attempt_at=now + lease)
        )
        rows = connection.execute(_CLAIMED, {"ids": ids}).all()
        due: list[Due] = []
        unopened: list[int] = []
        for row in rows:
            try:
                secret = self._secret(row.endpoint_id, row.secret_sealed)
            except SealError:
                unopened.append(row.id)
                continue
            body = row.body or b""
            due.append(Due(row.id, row.event_id, row.endpoint_id, row.url, secret, body, row.attempts, row.occurred_at))
        if unopened:
            # A secret this instance cannot open (a server secret not shared by every
            # instance, a damaged row): its deliveries keep their attempts and wait out the
            # lease for an instance that can, without holding up the other endpoints'.
            log.error("webhook endpoint key does not unseal here; %d deliveries left to other instances", len(unopened))
            connection.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(unopened))
                .values(attempts=WebhookDelivery.attempts - 1)
            )
        return due

    async def settle(
        self, delivery_id: int, now: datetime, status: int | None, error: str | None, retry_at: datetime | None
    ) -> None:
        """The outcome of an attempt: delivered (no ``error``), due again at ``retry_at``, or
        failed for good (``retry_at`` None)."""
        if error is None:
            values: dict[str, object] = {"delivered_at": now, "next_attempt_at": None}
        elif retry_at is None:
            values = {"failed_at": now, "next_attempt_at": None}
        else:
            values = {"next_attempt_at": retry_at}
        statement = (
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.delivered_at.is_(None))
            .values(last_status=status, last_error=error, **values)
        )
        await self._db.write(lambda connection: connection.execute(statement))

    async def prune(self, before: datetime) -> int:
        """Forget deliveries finished (delivered or failed) before ``before``, and the events
        fanned out before it that no delivery still needs; how many events went."""
        finished = func.coalesce(WebhookDelivery.delivered_at, WebhookDelivery.failed_at)

        def work(connection: Connection) -> int:
            connection.execute(
                delete(WebhookDelivery).where(WebhookDelivery.next_attempt_at.is_(None), finished < before)
            )
            result = connection.execute(
                delete(WebhookEvent).where(
                    WebhookEvent.fanned_out_at < before,
                    ~exists().where(WebhookDelivery.event_id == WebhookEvent.id),
                )
            )
            return result.rowcount

        return await self._db.write(work)

    async def backlog(self) -> Backlog:
        """What is still to be delivered, for /metrics."""
        async with self._db.sessions() as session:
            deliveries = (
                await session.execute(
                    select(func.count(), func.min(WebhookEvent.occurred_at))
                    .select_from(WebhookDelivery)
                    .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
                    .where(WebhookDelivery.next_attempt_at.is_not(None))
                )
            ).one()
            events = (
                await session.execute(
                    select(func.count(), func.min(WebhookEvent.occurred_at)).where(
                        WebhookEvent.fanned_out_at.is_(None)
                    )
                )
            ).one()
        oldest = [t for t in (deliveries[1], events[1]) if t is not None]
        return Backlog(deliveries[0] + events[0], min(oldest) if oldest else None)


def _aad(endpoint_id: int) -> bytes:
    return f"webhook-endpoint:{endpoint_id}".encode()


def _endpoint(row: WebhookEndpoint, region: str | None) -> EndpointView:
    return EndpointView(row.id, row.url, tuple(row.event_types.split()), region, row.enabled)


def _wants(endpoint: _Row, event: _Row) -> bool:
    types = endpoint.event_types.split()
    return (not types or event.type in types) and endpoint.region_id in (None, event.region_id)


def _data(event: _Row, region: str | None) -> dict[str, object]:
    """An event's ids, by name; the consultation id is the one the API and pages use."""
    data: dict[str, object] = {"consultation": event.consultation_id, "region": region}
    if event.subject_id is not None:
        data["recording"] = event.subject_id
    if event.status is not None:
        data["status"] = event.status
    return data
