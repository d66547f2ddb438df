"""Webhooks from the real app on SQLite and PostgreSQL: every state change is delivered
signed, with ids only; filters hold; a rolled-back change tells nothing; a failing receiver
gets retries with growing waits, then the delivery fails for good (issue 19, events)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from signaling.protocol import Role
from signaling.sink import EventKind, RoomEvent
from tests.api.clinic import Clinic, clinic
from tests.server import RunningServer
from tests.statements import statements as sent
from tests.webhooks.receiver import Receiver, accept, unavailable
from woundcare.appkeys import SERVICES
from woundcare.db.models import Patient, WebhookDelivery, WebhookEndpoint, WebhookEvent
from woundcare.records.events import EventType
from woundcare.services import Services
from woundcare.webhooks.deliverer import TASK_NAME as DELIVERER_TASK
from woundcare.webhooks.deliverer import Deliverer

METRICS_TOKEN = "webhook metrics token"
MAX_ATTEMPTS = 5
BASE_SECONDS = 0.2
WAIT_SECONDS = 30.0
"""Bound on waiting for deliveries; they normally take well under a second."""
DATA_KEYS = {"consultation", "region", "recording", "status"}
"""All an event's data may name."""


async def until(check: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        result = check()
        if result if isinstance(result, bool) else await result:
            return
        assert time.monotonic() < deadline, f"not within {WAIT_SECONDS:.0f} s: {what}"
        await asyncio.sleep(0.05)


@dataclass
class Hooks:
    east: Clinic
    services: Services
    receivers: list[Receiver]

    async def endpoint(self, events: list[EventType] | None = None, region: str | None = None) -> Receiver:
        """A receiver started and added as an endpoint, with these filters."""
        receiver = Receiver()
        await receiver.start()
        self.receivers.append(receiver)
        region_id = await self.services.accounts.region_id(region) if region else None
        endpoint, receiver.secret = await self.services.webhooks.add(receiver.url, events or [], region_id)
        receiver.endpoint_id = endpoint.id
        return receiver

    async def queue_call(self) -> None:
        """A video call for the clinic's patient: one ``consultation.queued`` event."""
        await self.east.nurse.json("POST", "/api/consultations", expect=201, json={"patient": self.east.patient})

    async def scrape(self) -> str:
        response = await self.east.nurse.request("GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert response.status == 200
        return await response.text()

    async def deliveries(self, receiver: Receiver) -> list[WebhookDelivery]:
        async with self.services.database.sessions() as session:
            return list((await session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.endpoint_id == receiver.endpoint_id)
            )).all())

    async def events(self) -> list[WebhookEvent]:
        async with self.services.database.sessions() as session:
            return list((await session.scalars(select(WebhookEvent).order_by(WebhookEvent.occurred_at))).all())


@pytest.fixture
async def start_hooks(
    start_server: Callable[..., Awaitable[RunningServer]], migrated_db_url: str
) -> AsyncIterator[Callable[..., Awaitable[Hooks]]]:
    """The app with small retry waits (settings can be overridden), the clinic, receivers to add."""
    receivers: list[Receiver] = []
    async with AsyncExitStack() as stack:

        async def start(**overrides: Any) -> Hooks:
            settings = {
                "metrics_token": METRICS_TOKEN, "webhook_retry_base_seconds": BASE_SECONDS,
                "webhook_max_attempts": MAX_ATTEMPTS, "webhook_timeout_seconds": 2.0, "webhook_poll_seconds": 0.5,
                **overrides,
            }
            server = await start_server(database_url=migrated_db_url, **settings)
            east = await stack.enter_async_context(clinic(server))
            return Hooks(east, server.app[SERVICES], receivers)

        try:
            yield start
        finally:
            for receiver in receivers:
                await receiver.stop()


@pytest.fixture
async def hooks(start_hooks: Callable[..., Awaitable[Hooks]]) -> Hooks:
    return await start_hooks()


async def patient_texts(hooks: Hooks) -> list[str]:
    """What would name the clinic's patient: name, national id, pseudonym, row id."""
    async with hooks.services.database.sessions() as session:
        patient = await session.scalar(select(Patient).where(Patient.pseudonym == hooks.east.patient))
    assert patient is not None
    return ["Kari", "Øst", "01018012371", patient.pseudonym, '"patient"']


async def test_every_state_change_is_delivered_once_signed_and_with_ids_only(hooks: Hooks) -> None:
    everything = await hooks.endpoint()
    queued_east = await hooks.endpoint([EventType.CONSULTATION_QUEUED], region="east")
    west = await hooks.endpoint(region="west")
    east, services = hooks.east, hooks.services

    call = await east.nurse.json("POST", "/api/consultations", expect=201, json={"patient": east.patient})
    # The first viewer's join, as signaling hands it to the session log.
    services.session_log.emit(RoomEvent(call["id"], EventKind.JOINED, "u2", Role.SPECIALIST, "east"))
    await services.session_log.flush()
    await east.sign(call["id"])
    await east.nurse.json("POST", f"/api/consultations/{call['id']}/end", expect=204)
    question = "Is the edge of the wound macerated since Friday?"
    econsult = await east.nurse.json("POST", "/api/consultations", expect=201, json={
        "patient": east.patient, "channel": "econsult", "question": question, "urgency": "soon"})
    await east.sign(econsult["id"])
    left = await east.nurse.json("POST", "/api/consultations", expect=201, json={"patient": east.patient})
    assert await services.consultations.abandon(left["id"], datetime.now(UTC) + timedelta(seconds=1))
    view = await services.consultations.get(left["id"])
    assert view is not None
    capture = await services.recordings.begin(view, "u2")
    recording = await services.recordings.finish(capture, "stopped", None)  # nothing uploaded: failed

    expected = [
        (EventType.CONSULTATION_QUEUED, call["id"], None),
        (EventType.CONSULTATION_STARTED, call["id"], None),
        (EventType.ASSESSMENT_SIGNED, call["id"], None),
        (EventType.CONSULTATION_ENDED, call["id"], "ended"),
        (EventType.ECONSULT_ASKED, econsult["id"], None),
        (EventType.ASSESSMENT_SIGNED, econsult["id"], None),
        (EventType.ECONSULT_ANSWERED, econsult["id"], None),
        (EventType.CONSULTATION_QUEUED, left["id"], None),
        (EventType.CONSULTATION_ENDED, left["id"], "abandoned"),
        (EventType.RECORDING_FINISHED, left["id"], "failed"),
    ]
    await until(lambda: len(everything.accepted) >= len(expected), "every event delivered")
    await until(lambda: len(queued_east.accepted) >= 2, "the queued events delivered to the filtered endpoint")

    got = [r.payload for r in everything.accepted.values()]
    assert Counter((p["type"], p["data"]["consultation"], p["data"].get("status")) for p in got) == Counter(
        (t.value, c, s) for t, c, s in expected
    )
    assert all(r.verified for r in everything.received)
    assert len(everything.received) == len(expected), "one attempt each: the receiver answered at once"
    recorded = next(p for p in got if p["type"] == "recording.finished")
    assert recorded["data"]["recording"] == recording.id
    for payload in got:
        assert set(payload) == {"type", "timestamp", "data"}
        assert set(payload["data"]) <= DATA_KEYS and payload["data"]["region"] == "east"
    bodies = b"".join(r.body for r in everything.received).decode()
    for text in [*await patient_texts(hooks), question, "Compression"]:
        assert text not in bodies
    # The ids the receiver saw are the outbox's, one each.
    assert {e.id for e in await hooks.events()} == set(everything.accepted)

    assert sorted(r.payload["data"]["consultation"] for r in queued_east.accepted.values()) == sorted(
        [call["id"], left["id"]]
    )
    assert {r.payload["type"] for r in queued_east.received} == {"consultation.queued"}
    assert await hooks.deliveries(west) == [] and west.received == []


async def test_only_an_event_some_endpoint_wants_gets_a_body(hooks: Hooks) -> None:
    """The body is fixed for the deliveries that sign it; an event none wants is marked fanned
    out without one, beside one that is sent."""
    ended = await hooks.endpoint([EventType.CONSULTATION_ENDED])
    call = await hooks.east.nurse.json("POST", "/api/consultations", expect=201, json={"patient": hooks.east.patient})
    assert await hooks.services.consultations.abandon(call["id"], datetime.now(UTC) + timedelta(seconds=1))
    await until(lambda: len(ended.accepted) >= 1, "the end delivered")

    events = {e.type: e for e in await hooks.events()}
    assert set(events) == {EventType.CONSULTATION_QUEUED.value, EventType.CONSULTATION_ENDED.value}
    queued, end = events[EventType.CONSULTATION_QUEUED.value], events[EventType.CONSULTATION_ENDED.value]
    assert queued.fanned_out_at is not None and queued.body is None
    assert end.body == ended.received[0].body
    assert [d.event_id for d in await hooks.deliveries(ended)] == [end.id]


async def test_a_change_rolled_back_tells_nothing(hooks: Hooks) -> None:
    receiver = await hooks.endpoint()
    await hooks.queue_call()
    # A second call for the same patient by the same nurse: refused by the unique index, rolled back.
    await hooks.east.nurse.json("POST", "/api/consultations", expect=409, json={"patient": hooks.east.patient})
    await until(lambda: len(receiver.accepted) >= 1, "the first start's event delivered")
    async with hooks.services.database.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(WebhookEvent)) == 1


async def test_a_failing_receiver_gets_retries_with_growing_waits_then_the_delivery_fails(hooks: Hooks) -> None:
    failing = await hooks.endpoint()
    failing.answer = unavailable
    healthy = await hooks.endpoint()
    await hooks.queue_call()

    await until(failed_for_good(hooks, failing), "the failing receiver's delivery failed for good")
    attempts = failing.received
    assert len(attempts) == MAX_ATTEMPTS
    assert len({a.id for a in attempts}) == 1, "every retry carries the event's webhook-id"
    assert len({a.body for a in attempts}) == 1, "every retry sends the same body"
    assert all(a.verified for a in attempts), "each attempt is signed for its own timestamp"
    gaps = [later.at - earlier.at for earlier, later in zip(attempts, attempts[1:])]
    # The waits double (times a jitter in [0.5, 1]): the fourth is at least 0.8 s, the first
    # at most 0.2 s plus the time an attempt takes. A loaded machine stretches any gap, and a
    # stretched first gap once failed a 2x check, so growth is asked of the last gap's floor
    # (below) and of the order alone.
    assert gaps[-1] > gaps[0], gaps
    assert gaps[-1] >= BASE_SECONDS * 2 ** (MAX_ATTEMPTS - 2) * 0.5, gaps
    (delivery,) = await hooks.deliveries(failing)
    assert (delivery.attempts, delivery.last_status, delivery.last_error) == (MAX_ATTEMPTS, 503, "http_503")
    assert delivery.delivered_at is None and delivery.next_attempt_at is None
    # The other endpoint of the same event is not held up by the failing one.
    assert list(healthy.accepted) == [attempts[0].id] and len(healthy.received) == 1

    text = await hooks.scrape()
    assert f'woundcare_webhook_attempts_total{{result="http_503"}} {MAX_ATTEMPTS}.0' in text
    assert 'woundcare_webhook_deliveries_total{outcome="failed"} 1.0' in text
    assert 'woundcare_webhook_deliveries_total{outcome="delivered"} 1.0' in text
    assert "woundcare_webhook_delivery_seconds_count 1.0" in text
    assert "woundcare_webhook_pending 0.0" in text


async def test_deliveries_wait_in_the_outbox_while_the_receiver_is_down_and_are_counted(hooks: Hooks) -> None:
    receiver = await hooks.endpoint()
    receiver.answer = unavailable
    await hooks.queue_call()
    await until(lambda: len(receiver.received) >= 1, "a first attempt")
    backlog = await hooks.services.webhooks.backlog()
    assert backlog.pending == 1 and backlog.oldest is not None

    receiver.answer = accept
    await until(lambda: len(receiver.accepted) == 1, "delivery once the receiver is back")

    async def settled() -> bool:
        # The receiver has acted before the server reads its answer and records it.
        return (await hooks.services.webhooks.backlog()).pending == 0

    await until(settled, "the backlog empty once the delivery is recorded")


async def test_an_endpoint_whose_secret_does_not_open_holds_up_no_other(hooks: Hooks) -> None:
    """A damaged secret (or one sealed under another server secret) leaves that endpoint's
    deliveries waiting, attempts unspent, while the other endpoints get theirs."""
    damaged, healthy = await hooks.endpoint(), await hooks.endpoint()
    async with hooks.services.database.sessions() as session, session.begin():
        await session.execute(
            update(WebhookEndpoint).where(WebhookEndpoint.id == damaged.endpoint_id).values(secret_sealed=b"\0" * 40)
        )
    await hooks.queue_call()  # one event, claimed for both endpoints at once
    await until(lambda: len(healthy.accepted) == 1, "the healthy endpoint's delivery")
    await asyncio.sleep(1.0)  # passes of the deliverer (it polls every 0.5 s here)
    assert damaged.received == []
    stuck = await hooks.deliveries(damaged)
    assert len(stuck) == 1 and all(d.attempts == 0 and d.delivered_at is None and d.failed_at is None for d in stuck)


async def test_a_commit_wakes_the_deliverer_without_waiting_for_the_poll(
    start_hooks: Callable[..., Awaitable[Hooks]],
) -> None:
    """With a poll longer than the test's whole wait, only the commit's wake-up can deliver."""
    assert WAIT_SECONDS < 120
    hooks = await start_hooks(webhook_poll_seconds=120.0)
    receiver = await hooks.endpoint()
    # The deliverer's first pass found nothing: it now sleeps for the poll.
    await hooks.queue_call()
    await until(lambda: len(receiver.accepted) == 1, "the event delivered on its commit's wake-up")


async def test_a_commit_no_endpoint_hears_of_is_fanned_out_without_a_claim(
    start_hooks: Callable[..., Awaitable[Hooks]],
) -> None:
    """A call starting where no endpoint is configured (most sites): the pass its commit wakes
    marks the event fanned out in one statement, makes it no body (nothing would read it), and
    asks nothing of the deliveries, neither a claim nor when the next is due (issue 20: a
    join's CPU). The poll, longer than the test, would."""
    hooks = await start_hooks(webhook_poll_seconds=120.0)

    async def fanned_out() -> bool:
        events = await hooks.events()
        return bool(events) and all(e.fanned_out_at is not None for e in events)

    with sent(hooks.services.database) as statements:
        await hooks.queue_call()
        await until(fanned_out, "the call's event fanned out")
    assert [e.body for e in await hooks.events()] == [None]
    # What follows the fan-out's mark, in its transaction (a pass is one).
    [marked] = [i for i, s in enumerate(statements) if s.startswith("update webhook_events")]
    assert "body" not in statements[marked], statements[marked]
    assert not [s for s in statements[marked:] if "from webhook_deliveries" in s], statements[marked:]


async def test_a_deliverer_stopped_mid_pass_waits_for_every_attempt_to_end(
    hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At shutdown no attempt outlives the deliverer: each may still be settling its row (a
    session's close), and the database is stopped right after."""
    started: list[int] = []
    ended: list[int] = []

    async def attempt(_self: Deliverer, _http: Any, due: Any) -> None:
        index = len(started)
        started.append(due.delivery_id)
        try:
            await asyncio.sleep(WAIT_SECONDS)
        finally:
            # Cleanup that takes its time once cancelled, each its own.
            await asyncio.shield(asyncio.sleep(0.1 * (index + 1)))
            ended.append(due.delivery_id)

    monkeypatch.setattr(Deliverer, "_attempt", attempt)
    for _ in range(2):
        await hooks.endpoint()
    await hooks.queue_call()
    await until(lambda: len(started) == 2, "both attempts under way")
    [task] = [t for t in asyncio.all_tasks() if t.get_name() == DELIVERER_TASK]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(ended) == sorted(started)


async def test_finished_deliveries_are_pruned_and_pending_ones_kept(
    start_hooks: Callable[..., Awaitable[Hooks]],
) -> None:
    # Enough attempts that the failing delivery is still pending when pruned first.
    hooks = await start_hooks(webhook_max_attempts=100, webhook_retry_cap_seconds=1.0)
    failing = await hooks.endpoint()
    failing.answer = unavailable
    healthy = await hooks.endpoint()
    await hooks.queue_call()
    await until(lambda: len(failing.received) >= 1, "an attempt at the failing one")

    await until(delivered_to(hooks, healthy), "the healthy one's delivery recorded")

    webhooks = hooks.services.webhooks
    assert await webhooks.prune(datetime.now(UTC) - timedelta(days=1)) == 0
    assert len(await hooks.deliveries(healthy)) == 1
    # Later than everything: the delivered one goes; the event stays while the other still needs it.
    assert await webhooks.prune(datetime.now(UTC) + timedelta(minutes=1)) == 0
    assert await hooks.deliveries(healthy) == [] and len(await hooks.deliveries(failing)) == 1
    assert len(await hooks.events()) == 1

    failing.answer = accept
    await until(delivered_to(hooks, failing), "the other one delivered once it answers")
    assert await webhooks.prune(datetime.now(UTC) + timedelta(minutes=1)) == 1
    assert await hooks.events() == [] and await hooks.deliveries(failing) == []


def failed_for_good(hooks: Hooks, receiver: Receiver) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return [d.failed_at is not None for d in await hooks.deliveries(receiver)] == [True]

    return check


def delivered_to(hooks: Hooks, receiver: Receiver) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return [d.delivered_at is not None for d in await hooks.deliveries(receiver)] == [True]

    return check


async def test_metrics_answer_while_the_outbox_cannot_be_read(hooks: Hooks) -> None:
    await hooks.services.database.stop()
    assert "woundcare_webhook_pending 0.0" in await hooks.scrape()


async def test_two_instances_on_postgresql_send_each_event_once(
    start_server: Callable[..., Awaitable[RunningServer]], migrated_database_url: str
) -> None:
    """Two servers share one database and both deliver (one woken by its commits, the other
    polling all the time): each delivery is claimed by one of them, so the receiver gets
    every event once."""
    calls = 12
    # Instances of one deployment share the server secret (the endpoints' secrets are sealed under it).
    shared = {"database_url": migrated_database_url, "secret_key": "webhook cluster test secret"}
    busy = await start_server(instance="hooks-a", webhook_poll_seconds=0.5, **shared)
    await start_server(instance="hooks-b", webhook_poll_seconds=0.01, **shared)
    receiver = Receiver()
    await receiver.start()
    try:
        _, receiver.secret = await busy.app[SERVICES].webhooks.add(receiver.url, [], None)
        async with clinic(busy) as east:
            for _ in range(calls):
                call = await east.nurse.json("POST", "/api/consultations", expect=201, json={"patient": east.patient})
                await east.nurse.json("POST", f"/api/consultations/{call['id']}/end", expect=204)
        await until(lambda: len(receiver.accepted) == 2 * calls, "every event delivered")
        assert len(receiver.received) == 2 * calls, "an event sent by both instances"
        assert all(r.verified for r in receiver.received)
    finally:
        await receiver.stop()
