"""SQLAlchemy models. Identifying patient data never sits in a plain column: it is
sealed with the region's key (``woundcare.crypto``) into ``*_sealed`` columns."""

from __future__ import annotations

import enum
import secrets
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_public_id() -> str:
    """Random, non-identifying id for things that appear on the wire."""
    return secrets.token_urlsafe(12)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite drops the zone on the way back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: use datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(AsyncAttrs, DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime}


class StaffRole(str, enum.Enum):
    """What a staff member may do in the pilot (a user's membership of a region); not a
    participant's role in a call, which is :class:`signaling.protocol.Role`."""

    NURSE = "nurse"
    SPECIALIST = "specialist"
    PILOT_LEAD = "pilot_lead"
    ADMIN = "admin"


class ConsultationStatus(str, enum.Enum):
    WAITING = "waiting"
    ACTIVE = "active"
    ENDED = "ended"
    ABANDONED = "abandoned"
    """Left open with no nurse for ``abandon_seconds``: out of the queue, closed like ended.
    Stored by name in a VARCHAR(20) without a CHECK, so no migration was needed to add it."""


OPEN_STATUSES = (ConsultationStatus.WAITING, ConsultationStatus.ACTIVE)
"""A consultation in one of these is in the specialists' queue (a video call may be joined)."""
OPEN_STATUS_SQL = "status IN ('WAITING', 'ACTIVE')"
"""The same, as the partial index's condition (statuses are stored by name)."""
OPEN_CALL_SQL = f"{OPEN_STATUS_SQL} AND kind = 'VIDEO'"
"""An open video call: the one a nurse has per patient (e-consults are not calls to rejoin)."""


class ConsultationKind(str, enum.Enum):
    VIDEO = "video"
    """A live call: the nurse's camera, a specialist joins."""
    ECONSULT = "econsult"
    """Store and forward: photos and a question; a specialist answers later with an assessment."""


class Urgency(str, enum.Enum):
    """How soon an e-consult needs its answer, as the nurse judged it."""

    ROUTINE = "routine"
    SOON = "soon"
    URGENT = "urgent"


class Region(Base):
    """A pilot region: municipalities around one hospital trust."""

    __tablename__ = "regions"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    shredded_at: Mapped[datetime | None] = mapped_column(default=None)
    retention_days: Mapped[int | None] = mapped_column(default=None)
    """Ended consultations older than this are due for deletion; None keeps them."""


class RegionKey(Base):
    """A region's data key, wrapped by the master key; the master key is never stored here."""

    __tablename__ = "region_keys"
    __table_args__ = (UniqueConstraint("region_id", "version"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id"))
    version: Mapped[int] = mapped_column(Integer)
    wrapped: Mapped[bytes | None] = mapped_column(LargeBinary)
    """None once shredded."""
    master_key_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(default=None)


class RegionIndexKey(Base):
    """A region's blind-index key (one per region), wrapped by the master key like its data
    keys. Never rotated with them: the index values computed with it must keep matching."""

    __tablename__ = "region_index_keys"

    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    """Names the key in its wrapping's binding, as a data key's id does."""
    wrapped: Mapped[bytes | None] = mapped_column(LargeBinary)
    """None once the region is shredded."""
    master_key_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    """None for users who log in through OIDC only."""
    oidc_subject: Mapped[str | None] = mapped_column(String(200), unique=True, default=None)
    hpr_number: Mapped[str | None] = mapped_column(String(9), unique=True, default=None)
    """The health professional's number in the public HPR register (not patient data), as the
    identity provider last sent it; single sign-on may link by it (``oidc_link_by``)."""
    totp_secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    active: Mapped[bool] = mapped_column(default=True)
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    # Never loaded with the user: every authenticated request loads its user, and the roles it
    # needs come from ``Accounts.memberships`` (which leaves out shredded regions), so a
    # "selectin" here was a second query per request that nothing read. Reading it raises.
    memberships: Mapped[list[Membership]] = relationship(back_populates="user", lazy="raise")


class Membership(Base):
    """A user's role in one region; a user may serve several regions."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "region_id", "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id"))
    role: Mapped[StaffRole] = mapped_column(Enum(StaffRole, name="role", native_enum=False, length=20))

    user: Mapped[User] = relationship(back_populates="memberships")


class Patient(Base):
    __tablename__ = "patients"
    __table_args__ = (
        # One patient per national id and region: concurrent registrations of one number are
        # decided here. NULLs (rows not yet indexed, shredded regions) never collide.
        Index("uq_patients_region_national_id_index", "region_id", "national_id_index", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    pseudonym: Mapped[str] = mapped_column(String(40), unique=True, default=new_public_id)
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id"), index=True)
    identity_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    """National id number and name, sealed with the region's key."""
    national_id_index: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    """Blind index of the national id: HMAC-SHA256 under the region's index key
    (:mod:`woundcare.crypto.blind_index`); None until indexed (``woundcare patients index``)."""
    municipality: Mapped[str | None] = mapped_column(String(64), default=None)
    """Where the patient lives, for the pilot's travel-avoided estimate (no finer place)."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Consultation(Base):
    __tablename__ = "consultations"
    __table_args__ = (
        Index("ix_consultations_region_status", "region_id", "status"),
        # One open call per nurse and patient: a second would split the record.
        Index(
            "uq_consultations_open_per_nurse",
            "patient_id",
            "created_by",
            unique=True,
            sqlite_where=text(OPEN_CALL_SQL),
            postgresql_where=text(OPEN_CALL_SQL),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=new_public_id)
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    status: Mapped[ConsultationStatus] = mapped_column(
        Enum(ConsultationStatus, native_enum=False, length=20), default=ConsultationStatus.WAITING
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    """When the first viewer joined the nurse."""
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    """For an e-consult: when its answer was signed."""
    kind: Mapped[ConsultationKind] = mapped_column(
        Enum(ConsultationKind, native_enum=False, length=20), default=ConsultationKind.VIDEO, server_default="VIDEO"
    )
    urgency: Mapped[Urgency | None] = mapped_column(Enum(Urgency, native_enum=False, length=20), default=None)
    """An e-consult's; plain because the queue sorts by it and the pilot counts it (it names no one)."""
    question_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    """An e-consult's question to the specialist, sealed with the region's key."""


class ConsultationEvent(Base):
    """Who joined, dropped, rejoined or left a consultation, and when: the session log."""

    __tablename__ = "consultation_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    consultation_id: Mapped[str] = mapped_column(ForeignKey("consultations.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    role: Mapped[str | None] = mapped_column(String(20))
    subject: Mapped[str | None] = mapped_column(String(80))
    participant: Mapped[str | None] = mapped_column(String(20))
    detail: Mapped[str | None] = mapped_column(String(80))


class LoginSession(Base):
    """A browser session. The cookie holds a random token; only its hash is stored."""

    __tablename__ = "login_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    """SHA-256 (hex) of the cookie token."""
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(16))
    """password, password+totp, oidc"""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None] = mapped_column(default=None, index=True)


class Device(Base):
    """A head-camera device: a revocable token bound to one nurse and one region."""

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None, index=True)


class AuditEvent(Base):
    """One security-relevant event, a link in the hash chain (``woundcare.audit.chain``).

    Append-only: written only by ``AuditLog.record``, never updated or deleted. Never patient
    data: ids are pseudonymous.
    """

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    """1, 2, 3, ... without gaps: the chain's order. Unique, so two writers never fork it."""
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str | None] = mapped_column(String(80))
    """u<user id>, d<device id>, or None for an unknown caller."""
    role: Mapped[str | None] = mapped_column(String(20))
    region_id: Mapped[int | None] = mapped_column(default=None, index=True)
    action: Mapped[str] = mapped_column(String(64))
    resource: Mapped[str | None] = mapped_column(String(120))
    outcome: Mapped[str] = mapped_column(String(32))
    address: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    """The previous entry's ``hash``; 32 zero bytes for ``seq`` 1."""
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    """SHA-256 of ``prev_hash`` and this entry's canonical encoding (seq, time and fields)."""


class AuditCheckpoint(Base):
    """A signed statement "the audit chain's entry ``seq`` has ``hash``": rewriting the chain
    up to here, or cutting it off before here, no longer goes unnoticed."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    signed_at: Mapped[datetime] = mapped_column(default=utcnow)
    key_id: Mapped[str] = mapped_column(String(16))
    """Names the checkpoint key (derived from the server secret) that signed; never the key."""
    signature: Mapped[bytes] = mapped_column(LargeBinary(32))
    """HMAC-SHA256 over seq, hash and signed_at (``woundcare.audit.chain.CheckpointSigner``)."""


class ConsentKind(str, enum.Enum):
    VIDEO = "video"
    """The consultation by video itself."""
    SNAPSHOTS = "snapshots"
    """Storing still images of the wound in the record."""
    RECORDING = "recording"
    """Recording the video (optional)."""


class Consent(Base):
    """What the patient agreed to, as recorded by the nurse at the start of a consultation."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id"))
    consultation_id: Mapped[str | None] = mapped_column(ForeignKey("consultations.id"), index=True)
    kind: Mapped[ConsentKind] = mapped_column(Enum(ConsentKind, native_enum=False, length=20))
    given: Mapped[bool]
    recorded_by: Mapped[str] = mapped_column(String(80))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    withdrawn_at: Mapped[datetime | None] = mapped_column(default=None)


class Snapshot(Base):
    """A still image of the wound: the image a sealed blob, the thumbnail, annotations and
    measurement sealed in the row. Only non-identifying facts are plain columns."""

    __tablename__ = "snapshots"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=new_public_id)
    consultation_id: Mapped[str] = mapped_column(ForeignKey("consultations.id"), index=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    taken_at: Mapped[datetime] = mapped_column(default=utcnow)
    taken_by: Mapped[str] = mapped_column(String(80))
    request_id: Mapped[str | None] = mapped_column(String(64), default=None)
    media_type: Mapped[str] = mapped_column(String(20))
    width: Mapped[int]
    height: Mapped[int]
    size: Mapped[int]
    blob_key: Mapped[str] = mapped_column(String(64), unique=True)
    thumb_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    """The thumbnail (tens of kB) lives in the row: one blob write less per snapshot."""
    key_id: Mapped[str] = mapped_column(String(40), index=True)
    """The data key sealing image and thumbnail, so rotation finds what to re-encrypt."""
    annotations_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    annotated_at: Mapped[datetime | None] = mapped_column(default=None)
    area_cm2: Mapped[float | None] = mapped_column(default=None)
    """The measured wound area, plain beside the sealed annotations (as an assessment's outcome
    is) so the pilot's effect figures read it without opening drawings; None unmeasured."""


class Outcome(str, enum.Enum):
    TREATED_AT_HOME = "treated_at_home"
    REFERRED = "referred"
    HEALED = "healed"
    """The wound has closed: follow-up ends at home. Stored by name in a VARCHAR(20) without a
    CHECK (as ``ConsultationStatus.ABANDONED``), so no migration was needed to add it."""


class Assessment(Base):
    """The specialist's structured assessment. The clinical content is sealed; the outcome
    stays plain because the pilot's figures count it (it names no one)."""

    __tablename__ = "assessments"

    id: Mapped[int] = mapped_column(primary_key=True)
    consultation_id: Mapped[str] = mapped_column(ForeignKey("consultations.id"), unique=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id"))
    content_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    outcome: Mapped[Outcome | None] = mapped_column(Enum(Outcome, native_enum=False, length=20))
    author: Mapped[str] = mapped_column(String(80))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    signed_at: Mapped[datetime | None] = mapped_column(default=None)
    signed_by: Mapped[str | None] = mapped_column(String(80), default=None)
    version: Mapped[int] = mapped_column(default=1, server_default="1")
    """Raised by every save; writes check it, so none interleaves with signing (issue 15)."""
    acknowledged_at: Mapped[datetime | None] = mapped_column(default=None)
    """When the nurse acknowledged the signed plan (once; issue 18)."""
    acknowledged_by: Mapped[str | None] = mapped_column(String(80), default=None)




class QualitySample(Base):
    """Call quality as a participant's browser or camera measured it (WebRTC getStats),
    sent every few seconds: for the pilot's figures on rural networks."""

    __tablename__ = "quality_samples"

    id: Mapped[int] = mapped_column(primary_key=True)
    consultation_id: Mapped[str] = mapped_column(ForeignKey("consultations.id"), index=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    role: Mapped[str] = mapped_column(String(20))
    direction: Mapped[str] = mapped_column(String(10))
    """send or receive"""
    bitrate_kbps: Mapped[float | None]
    loss_pct: Mapped[float | None]
    rtt_ms: Mapped[float | None]
    fps: Mapped[float | None]
    width: Mapped[int | None]
    height: Mapped[int | None]


class TravelDistance(Base):
    """The round trip from a municipality to the region's hospital, as the pilot lead
    entered it: what each consultation treated at home saved."""

    __tablename__ = "travel_distances"
    __table_args__ = (UniqueConstraint("region_id", "municipality"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id"))
    municipality: Mapped[str] = mapped_column(String(64))
    km: Mapped[float]
    hours: Mapped[float]


class RecordingStatus(str, enum.Enum):
    RECORDING = "recording"
    COMPLETE = "complete"
    FAILED = "failed"
    """Nothing playable: no video arrived, the writer failed, or the server died mid-recording."""


class Recording(Base):
    """A consented video recording of a consultation. The video is a blob sealed chunk by
    chunk (``woundcare.crypto.stream``) under a key of its own, which the row keeps sealed
    with the region's data key: shredding the region makes the video unreadable."""

    __tablename__ = "recordings"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=new_public_id)
    consultation_id: Mapped[str] = mapped_column(ForeignKey("consultations.id"), index=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id"))
    status: Mapped[RecordingStatus] = mapped_column(Enum(RecordingStatus, native_enum=False, length=20))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_by: Mapped[str] = mapped_column(String(80))
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    end_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    """stopped, ended (the consultation), left (everyone else), shutdown, no_video, error, interrupted."""
    instance: Mapped[str] = mapped_column(String(200))
    """The server instance writing it, so that instance's restart finds what it left unfinished."""
    blob_key: Mapped[str] = mapped_column(String(64), unique=True)
    key_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    """The recording's stream key, sealed with the region's data key (kind ``recording_key``)."""
    key_id: Mapped[str] = mapped_column(String(40), index=True)
    """The region data key sealing ``key_sealed``, so rotation finds what to re-seal."""
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    """Bytes of ciphertext stored."""
    frames: Mapped[int] = mapped_column(default=0)
    width: Mapped[int | None] = mapped_column(default=None)
    height: Mapped[int | None] = mapped_column(default=None)


class GuestKind(str, enum.Enum):
    """Who a guest in a call is, shown to the others in place of a name."""

    INTERPRETER = "interpreter"
    RELATIVE = "relative"
    GP = "gp"
    """The patient's general practitioner (fastlege)."""


class GuestInvitation(Base):
    """A one-time link into one consultation's call, as an observer (docs/protocol.md §3.4).

    The link's code and the browser cookie it is exchanged for are random; only their hashes
    are stored. No name is kept: a guest is shown by its kind."""

    __tablename__ = "guest_invitations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=new_public_id)
    consultation_id: Mapped[str] = mapped_column(ForeignKey("consultations.id"), index=True)
    kind: Mapped[GuestKind] = mapped_column(Enum(GuestKind, native_enum=False, length=20))
    subject: Mapped[str] = mapped_column(String(80), unique=True)
    """The guest's ref (``inv-…``) in the room, the audit and TURN user names."""
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    cookie_hash: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    """Set by the one redemption: the browser that holds this cookie is the guest."""
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    redeemed_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None, index=True)


class WebhookEndpoint(Base):
    """A receiver of the webhooks (docs/webhooks.md), added by an admin on the command line.
    Its signing secret is sealed under a key derived from the server secret
    (``Purpose.WEBHOOK_SECRET``), bound to the endpoint's id."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    event_types: Mapped[str] = mapped_column(String(500), default="")
    """Space-separated event types it wants; empty: all of them."""
    region_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id"), default=None)
    """Only this region's events; None: every region's."""
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookEvent(Base):
    """The outbox: one row per event, written in the transaction of the change it tells of.

    Ids only (a consultation's public id, a region, a recording's id): no patient data. No
    foreign keys, so retention's deletion of a consultation is not held up by its events."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    """``msg_…``: the ``webhook-id`` of every delivery of this event, retries included."""
    type: Mapped[str] = mapped_column(String(40))
    consultation_id: Mapped[str | None] = mapped_column(String(40), default=None)
    region_id: Mapped[int | None] = mapped_column(default=None)
    subject_id: Mapped[str | None] = mapped_column(String(40), default=None)
    """The id of what the event is about beside the consultation (a recording)."""
    status: Mapped[str | None] = mapped_column(String(20), default=None)
    """The state reached, for events with more than one ending (``ended``, ``abandoned``)."""
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    body: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    """The JSON sent, fixed when the event is fanned out so every retry signs the same bytes;
    None for an event no endpoint wanted."""
    fanned_out_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    """When its deliveries were made, one per endpoint that wants it; None: not yet."""


class WebhookDelivery(Base):
    """One event on its way to one endpoint: retried with backoff until a 2xx or the last attempt."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id"),
        Index("ix_webhook_deliveries_due", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"))
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    """When it is due; None once delivered or failed for good."""
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    failed_at: Mapped[datetime | None] = mapped_column(default=None)
    """Set after the last attempt failed: no more retries."""
    last_status: Mapped[int | None] = mapped_column(default=None)
    """The HTTP status of the last attempt; None if it got no answer."""
    last_error: Mapped[str | None] = mapped_column(String(40), default=None)
    """A code for the last failed attempt (``http_503``, ``timeout``, ``connection``)."""
