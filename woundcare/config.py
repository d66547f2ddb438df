"""Settings: environment variables (``WOUNDCARE_*``) over an optional TOML file over defaults.

Secrets are ``SecretStr`` so that ``repr(settings)`` and logs show ``**********``.
Secrets not given are generated once into the data folder (mode 0600).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from ipaddress import ip_network
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .storage.files import create_once


class Settings(BaseSettings):
    # hide_input_in_errors: a refused setting may be a secret; the message names the rule only.
    model_config = SettingsConfigDict(
        env_prefix="WOUNDCARE_", extra="forbid", validate_default=True, hide_input_in_errors=True
    )

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    public_url: str | None = None
    """How clients reach the server (behind a proxy); defaults to http://host:port."""
    data_dir: Path = Path("var")
    """SQLite database, generated secrets and the encrypted blob store."""
    database_url: str | None = None
    """SQLAlchemy async URL; default ``sqlite+aiosqlite:///<data_dir>/woundcare.db``."""
    auto_migrate: bool = True
    """Upgrade the schema at start-up. With several instances, turn it off and run
    ``woundcare db upgrade`` as a deploy step instead."""
    secret_key: SecretStr | None = None
    """Signs invitation tokens; generated into ``<data_dir>/secret.key`` when not set."""
    instance: str | None = None
    """This instance's name, stable across restarts (default ``<hostname>:<port>``): its
    unfinished uploads are cleaned up when it starts again."""
    redis_url: str | None = None
    """Redis for signaling across several instances (``redis://host:6379/0``); unset: one process."""
    redis_prefix: str = "wc"
    """Prefix of this deployment's Redis keys and channels."""
    instance_ttl_seconds: float = Field(5.0, gt=0, le=60)
    """With Redis: an instance silent this long is taken for dead; its participants resume elsewhere."""
    snapshot_max_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    snapshot_max_pixels: int = Field(40_000_000, ge=10_000)
    upload_timeout_seconds: float = Field(300.0, gt=0)
    """A snapshot upload's whole body must arrive within this (20 MB at about 0.5 Mbit/s)."""
    demo: bool = True
    """Create a demo region, users and a fictional patient in an empty database."""

    # Lists in the environment are comma-separated or a JSON list (NoDecode: _split reads
    # both), lists in TOML.
    stun_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    turn_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    turn_secret: SecretStr | None = None
    """coturn's ``static-auth-secret``."""
    turn_ttl_seconds: int = Field(3600, gt=0, le=86400)
    ice_transport_policy: Literal["all", "relay"] = "all"
    """``relay`` makes clients use TURN only (hides addresses; also how tests keep browsers on loopback)."""

    invitation_ttl_seconds: int = Field(8 * 3600, gt=0)
    grace_seconds: float = Field(60.0, gt=0)
    abandon_seconds: float = Field(600.0, gt=0)
    """An open consultation with no nurse in it for this long is abandoned: it leaves the queue."""
    heartbeat_seconds: float = Field(10.0, gt=0)
    join_timeout_seconds: float = Field(10.0, gt=0)
    max_message_bytes: int = Field(64 * 1024, ge=1024, le=1024 * 1024)
    rate_per_second: float = Field(50.0, gt=0)
    rate_burst: int = Field(200, ge=1)

    master_key: SecretStr | None = None
    """Base64 master key wrapping the regions' data keys; else ``master_key_file``."""
    master_key_file: Path | None = None
    """Default ``<data_dir>/master.key`` (created on first start). Back it up apart from the database."""
    old_master_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    """Accepted for unwrapping during a master-key rotation."""

    session_idle_minutes: int = Field(30, gt=0)
    session_max_hours: int = Field(12, gt=0)
    login_throttle_after: int = Field(3, ge=1)
    """Failed logins in a row before each next try must wait (doubling from 1 s)."""
    login_throttle_base_seconds: float = Field(1.0, gt=0)
    login_lock_after: int = Field(10, ge=1)
    login_lock_minutes: int = Field(15, gt=0)
    address_failure_limit: int = Field(50, ge=1)
    """Failed logins from one address per 10 minutes before it is refused."""
    # Client addresses behind a reverse proxy (docs/security.md, "Proxies and client addresses").
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Addresses or CIDRs of the reverse proxies whose forwarding header names the client
    (``127.0.0.1,::1`` for nginx on the same host); unset: the peer is the client."""
    proxy_header: Literal["X-Forwarded-For", "Forwarded"] = "X-Forwarded-For"
    """The header those proxies write; the other one is never read."""

    pilot_timezone: str = "Europe/Oslo"
    """Where the pilot's days begin and end, for the figures' ``from`` and ``to``."""
    revocation_poll_seconds: float = Field(2.0, gt=0)
    """How often revoked devices, sessions and users are looked for, to close their sockets."""

    oidc_issuer: str | None = None
    """OpenID Connect provider (HelseID: ``https://helseid-sts.nhn.no``); unset turns OIDC login off."""
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    """For ``client_secret_basic``; ignored when ``oidc_client_key_file`` is set."""
    oidc_client_key_file: Path | None = None
    """Private JWK (JSON) or PEM key for ``private_key_jwt``, the only method HelseID accepts."""
    oidc_subject_claim: str = "sub"
    """ID-token claim matched against ``users.oidc_subject`` (HelseID: ``helseid://claims/identity/pid``)."""
    oidc_scopes: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["openid"])
    oidc_timeout_seconds: float = Field(10.0, gt=0, le=60)
    # HelseID's client rules (docs/security.md, "Single sign-on"): each switched on per deployment.
    oidc_client_auth: Literal["client_secret_basic", "private_key_jwt"] | None = None
    """How the server authenticates at the provider; unset: ``private_key_jwt`` when
    ``oidc_client_key_file`` is set, else ``client_secret_basic``."""
    oidc_par: bool = False
    """Push the authorization request to the provider (RFC 9126); HelseID requires it."""
    oidc_dpop: bool = False
    """Ask for DPoP-bound access tokens (RFC 9449); HelseID requires it."""
    oidc_userinfo: bool = False
    """Read claims from the userinfo endpoint too (with the DPoP-bound token)."""
    oidc_link_by: Literal["subject", "hpr_number"] = "subject"
    """Which local user a login is: ``users.oidc_subject`` = the subject claim, or
    ``users.hpr_number`` = the HPR claim."""
    oidc_hpr_claim: str = "helseid://claims/hpr/hpr_number"
    """The claim with the HPR number, stored on the user at each login."""
    oidc_security_level_claim: str = "helseid://claims/identity/security_level"
    oidc_min_security_level: int | None = Field(None, ge=1, le=4)
    """Logins below this security level are refused and audited (HelseID: 4 = high); unset: no minimum."""
    oidc_api_audience: str | None = None
    """When set, the API also takes the provider's access tokens with this ``aud`` from programs
    (journal systems acting for a professional, by HPR number), only DPoP-bound with a proof."""

    # Hardening (issue 15): who may read /metrics, and how much image decoding runs at once.
    metrics_token: SecretStr | None = None
    """``GET /metrics`` answers only ``Authorization: Bearer <token>``; unset, it answers 404."""
    image_workers: int = Field(2, ge=1, le=32)
    """Threads that decode uploaded photos, apart from the pool that hashes passwords."""
    image_pixel_budget: int = Field(50_000_000, ge=10_000)
    """Pixels decoded at once across all uploads (several bytes each in memory); the rest wait."""
    image_wait_seconds: float = Field(30.0, gt=0)
    """An upload that cannot start decoding within this gets ``503 busy``."""

    # Webhooks (issue 19, docs/webhooks.md): endpoints are added with ``woundcare webhooks add``.
    webhook_timeout_seconds: float = Field(5.0, gt=0, le=60)
    """One attempt's whole request and answer; a receiver answers first and works after."""
    webhook_retry_base_seconds: float = Field(10.0, gt=0)
    """The wait after a first failed attempt; it doubles with each next one (with jitter)."""
    webhook_retry_cap_seconds: float = Field(3600.0, gt=0)
    """The longest wait between two attempts."""
    webhook_max_attempts: int = Field(16, ge=1, le=100)
    """Attempts of one delivery before it is marked failed (over 4 to 7 hours at the defaults)."""
    webhook_keep_days: int = Field(30, ge=1)
    """Finished deliveries and their events are kept this long (to see what was sent), then deleted."""
    webhook_poll_seconds: float = Field(5.0, gt=0)
    """How often the outbox is read for events committed by another process (this one's wake
    the deliverer at once)."""

    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object per line with the request id (for log shipping)."""

    @field_validator("pilot_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. Europe/Oslo)") from None
        return value

    @field_validator("stun_urls", "turn_urls", "old_master_keys", "oidc_scopes", "trusted_proxies", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        # Environment variables give "a,b" (as the README writes them) or '["a", "b"]' (as
        # pydantic-settings would); TOML gives a list. No URL, address or scope starts with "[".
        if isinstance(value, str) and value.lstrip().startswith("["):
            try:
                items = json.loads(value)
            except ValueError:
                items = None
            if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
                raise ValueError("a list setting is comma-separated or a JSON list of strings")
            return items
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, items: list[str]) -> list[str]:
        for item in items:
            try:
                ip_network(item, strict=False)
            except ValueError:
                raise ValueError("trusted_proxies must be IP addresses or CIDR networks") from None
        return items

    @model_validator(mode="after")
    def _turn_needs_secret(self) -> Settings:
        if self.turn_urls and self.turn_secret is None:
            raise ValueError("turn_urls needs turn_secret (coturn's static-auth-secret)")
        return self

    @model_validator(mode="after")
    def _oidc_complete(self) -> Settings:
        if self.oidc_issuer is None:
            if self.oidc_api_audience is not None:
                raise ValueError("oidc_api_audience needs oidc_issuer")
            return self
        if not self.oidc_client_id:
            raise ValueError("oidc_issuer needs oidc_client_id")
        if self.oidc_client_secret is None and self.oidc_client_key_file is None:
            raise ValueError("oidc_issuer needs oidc_client_key_file (private_key_jwt) or oidc_client_secret")
        if self.oidc_client_auth == "private_key_jwt" and self.oidc_client_key_file is None:
            raise ValueError("oidc_client_auth private_key_jwt needs oidc_client_key_file")
        if self.oidc_client_auth == "client_secret_basic" and self.oidc_client_secret is None:
            raise ValueError("oidc_client_auth client_secret_basic needs oidc_client_secret")
        if "openid" not in self.oidc_scopes:
            raise ValueError("oidc_scopes must include 'openid'")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("WOUNDCARE_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'woundcare.db'}"

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def instance_name(self) -> str:
        return self.instance or f"{socket.gethostname()}:{self.port}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def intent_dir(self) -> Path:
        return self.data_dir / "intents"

    @property
    def recording_dir(self) -> Path:
        """Recordings' sealed blobs: a store of their own, which the snapshot sweep never sees."""
        return self.data_dir / "recordings"

    @property
    def cookie_secure(self) -> bool:
        return self.base_url.startswith("https://")

    def signing_key(self) -> bytes:
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        return read_or_create_secret(self.data_dir / "secret.key")


def read_or_create_secret(path: Path, nbytes: int = 32) -> bytes:
    """A random secret kept in a 0600 file, created atomically on first use."""
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(nbytes).encode()
    try:
        create_once(path, value)
    except FileExistsError:
        # Another process won the race; its secret is the one.
        return path.read_bytes().strip()
    return value
