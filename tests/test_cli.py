"""The admin commands, run in-process against a SQLite database in tmp_path.

The commands call ``asyncio.run`` themselves, so these tests are plain sync functions;
they read the database back with their own short ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from woundcare.auth.passwords import verify_password
from tests.e2e.process import REPO_ROOT, child_environ
from tests.services import free_port
from woundcare.cli import NEW_PASSWORD_ENV, _progress, main
from woundcare.db.database import Database
from woundcare.db.models import (
    AuditEvent, Consultation, Device, LoginSession, Membership, Patient, Region, StaffRole, User,
)

PASSWORD = "correct horse battery staple"


def _query(tmp_path: Path, statement: Any) -> list[Any]:
    async def run() -> list[Any]:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'woundcare.db'}")
        await db.start()
        try:
            async with db.sessions() as session, session.begin():
                return list((await session.scalars(statement)).all())
        finally:
            await db.stop()

    return asyncio.run(run())


def _add_session(tmp_path: Path, user_id: int) -> None:
    async def run() -> None:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'woundcare.db'}")
        await db.start()
        try:
            now = datetime.now(UTC)
            async with db.sessions() as session, session.begin():
                session.add(
                    LoginSession(
                        id=f"s{now.timestamp()}",
                        user_id=user_id,
                        csrf_token="c",
                        method="password",
                        expires_at=now + timedelta(hours=1),
                    )
                )
        finally:
            await db.stop()

    asyncio.run(run())


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    def run(*argv: str) -> tuple[int, str, str]:
        code = main([*argv, "--data-dir", str(tmp_path)])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _user(tmp_path: Path, username: str) -> User:
    (user,) = _query(tmp_path, select(User).where(User.username == username))
    return user


def test_region_user_lifecycle(cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli("region", "add", "nord", "Nord pilot")[0] == 0
    assert cli("region", "add", "sor", "Sør pilot")[0] == 0

    monkeypatch.setenv(NEW_PASSWORD_ENV, PASSWORD)
    code, out, _ = cli(
        "user",
        "add",
        "nina",
        "--name",
        "Nina Nurse",
        "--role",
        "nurse",
        "--region",
        "nord",
        "--region",
        "sor",
    )
    assert code == 0
    assert PASSWORD not in out  # a given password is not echoed
    user = _user(tmp_path, "nina")
    assert user.display_name == "Nina Nurse" and user.active
    assert verify_password(user.password_hash or "", PASSWORD)
    memberships = _query(tmp_path, select(Membership).where(Membership.user_id == user.id))
    assert sorted(m.role for m in memberships) == [StaffRole.NURSE, StaffRole.NURSE]

    _add_session(tmp_path, user.id)
    assert cli("user", "disable", "nina")[0] == 0
    assert not _user(tmp_path, "nina").active
    sessions = _query(tmp_path, select(LoginSession).where(LoginSession.user_id == user.id))
    assert sessions and all(s.revoked_at is not None for s in sessions)

    # Reset without the variable: a generated password, printed once, that verifies; unlocked.
    monkeypatch.delenv(NEW_PASSWORD_ENV)
    _add_session(tmp_path, user.id)
    code, out, _ = cli("user", "reset-password", "nina")
    assert code == 0
    generated = out.split("password (shown once): ")[1].strip()
    user = _user(tmp_path, "nina")
    assert verify_password(user.password_hash or "", generated)
    assert not verify_password(user.password_hash or "", PASSWORD)
    assert user.failed_logins == 0 and user.locked_until is None
    sessions = _query(tmp_path, select(LoginSession).where(LoginSession.user_id == user.id))
    assert all(s.revoked_at is not None for s in sessions)

    actions = {e.action: e for e in _query(tmp_path, select(AuditEvent))}
    assert set(actions) == {
        "admin.region.add",
        "admin.user.add",
        "admin.user.disable",
        "admin.user.reset_password",
    }
    assert actions["admin.region.add"].resource in {"region:nord", "region:sor"}
    assert actions["admin.user.disable"].resource == f"user:u{user.id}"
    _assert_no_secrets(tmp_path, PASSWORD, generated)


def test_user_hpr_number(cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An account linked to an HPR number, for single sign-on that links by it; one account each."""
    monkeypatch.setenv(NEW_PASSWORD_ENV, PASSWORD)
    cli("region", "add", "nord", "Nord pilot")
    cli("user", "add", "sam", "--name", "Sam", "--role", "specialist", "--region", "nord")
    cli("user", "add", "kim", "--name", "Kim", "--role", "specialist", "--region", "nord")
    assert cli("user", "hpr", "sam", "9144889")[0] == 0
    assert _user(tmp_path, "sam").hpr_number == "9144889"
    assert cli("user", "hpr", "kim", "9144889")[1:] == ("", "woundcare: error: this HPR number belongs to another user\n")
    assert cli("user", "hpr", "kim", "12345678901")[1:] == ("", "woundcare: error: an HPR number is one to nine digits\n")
    assert cli("user", "hpr", "ghost", "1234567")[2] == "woundcare: error: no such user: ghost\n"
    assert _user(tmp_path, "kim").hpr_number is None
    [audited] = _query(tmp_path, select(AuditEvent).where(AuditEvent.action == "admin.user.hpr"))
    assert audited.resource == f"user:u{_user(tmp_path, 'sam').id}"


def test_device_issue_and_revoke(cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NEW_PASSWORD_ENV, PASSWORD)
    cli("region", "add", "nord", "Nord pilot")
    cli("user", "add", "nina", "--name", "Nina", "--role", "nurse", "--region", "nord")

    code, out, _ = cli("device", "issue", "--user", "nina", "--region", "nord", "--name", "cam 1")
    assert code == 0
    token = out.split("token (shown once): ")[1].strip()
    assert token.startswith("wcd_")
    (device,) = _query(tmp_path, select(Device))
    assert device.name == "cam 1" and device.revoked_at is None

    assert cli("device", "revoke", str(device.id))[0] == 0
    (device,) = _query(tmp_path, select(Device))
    assert device.revoked_at is not None

    events = _query(tmp_path, select(AuditEvent).where(AuditEvent.action.like("admin.device.%")))
    assert {(e.action, e.resource, e.actor, e.outcome) for e in events} == {
        ("admin.device.issue", f"device:{device.id}", "cli", "ok"),
        ("admin.device.revoke", f"device:{device.id}", "cli", "ok"),
    }
    _assert_no_secrets(tmp_path, PASSWORD, token)


def test_errors_exit_2(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NEW_PASSWORD_ENV, PASSWORD)
    cli("region", "add", "nord", "Nord pilot")
    cli("user", "add", "sam", "--name", "Sam", "--role", "specialist", "--region", "nord")

    for argv, message in [
        (("region", "add", "nord", "Again"), "region already exists: nord"),
        (
            ("user", "add", "sam", "--name", "S", "--role", "nurse", "--region", "nord"),
            "user already exists: sam",
        ),
        (("user", "add", "x", "--name", "X", "--role", "nurse", "--region", "nope"), "no such region: nope"),
        (("user", "disable", "ghost"), "no such user: ghost"),
        (("user", "reset-password", "ghost"), "no such user: ghost"),
        (
            ("device", "issue", "--user", "sam", "--region", "nord", "--name", "c"),
            "not a nurse of region nord",
        ),
        (("device", "issue", "--user", "ghost", "--region", "nord", "--name", "c"), "no such user: ghost"),
        (("device", "revoke", "99"), "no such device: 99"),
    ]:
        code, out, err = cli(*argv)
        assert code == 2, argv
        assert message in err and err.count("\n") == 1, (argv, err)
        assert out == ""


def test_retention_totp_and_refusals_that_need_state(cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NEW_PASSWORD_ENV, PASSWORD)
    cli("region", "add", "nord", "Nord pilot")
    cli("user", "add", "nina", "--name", "Nina", "--role", "nurse", "--region", "nord")

    assert cli("region", "retention", "nord", "30") == (0, "region nord: consultations ended over 30 days ago are due\n", "")
    assert [r.retention_days for r in _query(tmp_path, select(Region))] == [30]
    assert cli("region", "retention", "nord", "0") == (0, "region nord: kept\n", "")
    assert [r.retention_days for r in _query(tmp_path, select(Region))] == [None]

    user_id = _user(tmp_path, "nina").id
    _add_session(tmp_path, user_id)
    code, out, _ = cli("user", "totp", "nina")
    assert code == 0 and "secret (shown once): " in out
    assert _user(tmp_path, "nina").totp_secret_sealed is not None
    sessions = _query(tmp_path, select(LoginSession).where(LoginSession.user_id == user_id))
    assert sessions and all(s.revoked_at is not None for s in sessions)

    assert cli("device", "issue", "--user", "nina", "--region", "nord", "--name", "c")[0] == 0
    (device,) = _query(tmp_path, select(Device))
    assert cli("device", "revoke", str(device.id))[0] == 0
    assert cli("user", "disable", "nina")[0] == 0
    for argv, message in [
        (("device", "revoke", str(device.id)), f"device already revoked: {device.id}"),
        (("device", "issue", "--user", "nina", "--region", "nord", "--name", "c"), "user is disabled: nina"),
        (("region", "retention", "nope", "5"), "no such region: nope"),
        (("user", "totp", "ghost"), "no such user: ghost"),
    ]:
        assert cli(*argv) == (2, "", f"woundcare: error: {message}\n"), argv

    events = _query(tmp_path, select(AuditEvent).where(AuditEvent.action.in_(["admin.region.retention", "admin.user.totp"])))
    assert sorted((e.action, e.resource) for e in events) == [
        ("admin.region.retention", "region:nord:30"),
        ("admin.region.retention", "region:nord:keep"),
        ("admin.user.totp", f"user:u{user_id}"),
    ]


def _assert_no_secrets(tmp_path: Path, *secrets: str) -> None:
    for event in _query(tmp_path, select(AuditEvent)):
        columns = [event.actor, event.role, event.action, event.resource, event.outcome, event.address]
        text = " ".join(str(c) for c in columns if c is not None)
        for secret in secrets:
            assert secret not in text


def test_audit_verify_names_the_first_edited_entry(cli: Any, tmp_path: Path) -> None:
    for code in ("east", "west", "north"):
        assert cli("region", "add", code, code.title())[0] == 0
    code, out, _ = cli("audit", "verify")
    assert code == 0 and "audit chain ok: 3 entries" in out

    async def edit_second() -> None:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'woundcare.db'}")
        await db.start()
        try:
            async with db.sessions() as session, session.begin():
                row = await session.scalar(select(AuditEvent).where(AuditEvent.seq == 2))
                assert row is not None
                row.outcome = "denied"
        finally:
            await db.stop()

    asyncio.run(edit_second())
    code, out, err = cli("audit", "verify")
    assert code == 1
    assert "seq 2" in out + err and "edited" in out + err


def _add_consultation(tmp_path: Path, region_code: str, consultation_id: str) -> None:
    async def run() -> None:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'woundcare.db'}")
        await db.start()
        try:
            async with db.sessions() as session, session.begin():
                region = await session.scalar(select(Region).where(Region.code == region_code))
                assert region is not None
                patient = Patient(region_id=region.id)
                session.add(patient)
                await session.flush()
                session.add(Consultation(id=consultation_id, region_id=region.id, patient_id=patient.id))
        finally:
            await db.stop()

    asyncio.run(run())


def test_invite_takes_an_id_that_starts_with_a_dash(
    cli: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Consultation ids are URL-safe base64, so 1 in 64 starts with "-"; this one also with "-h".
    consultation = "-hG3k9sQx2LmN0pR"
    assert cli("region", "add", "nord", "Nord pilot")[0] == 0
    _add_consultation(tmp_path, "nord", consultation)
    tokens = set()
    for argv in (("invite", consultation, "--role", "nurse"), ("invite", "--role", "nurse", consultation)):
        code, out, err = cli(*argv)
        assert (code, err) == (0, ""), argv
        assert len(out.split()) == 1, argv
        tokens.add(out)
    # "--" still ends the options, as in every argparse program.
    assert main(["invite", "--role", "nurse", "--data-dir", str(tmp_path), "--", consultation]) == 0
    assert len(capsys.readouterr().out.split()) == 1
    assert len(tokens) == 2  # each invitation is its own
    # An unknown id is still looked up, not taken for an option.
    code, out, err = cli("invite", "-nosuchconsultation", "--role", "nurse")
    assert code == 2 and "no such consultation" in err and out == ""


def test_the_start_up_hint_works_as_typed(tmp_path: Path) -> None:
    """The demo server's start-up banner prints an invite command; pasted into a shell in
    another folder, it prints a token."""
    log_path = tmp_path / "serve.log"
    environ = child_environ({})
    argv = [sys.executable, "-m", "woundcare", "serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "var")]
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            argv, cwd=REPO_ROOT, env=environ, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while "invitation token: " not in (output := log_path.read_text()):
            assert server.poll() is None, f"the server exited with {server.returncode}:\n{output}"
            assert time.monotonic() < deadline, f"no start-up hint within 60 s:\n{output}"
            time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(20)
    command = output.split("invitation token: ", 1)[1].splitlines()[0]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        command, shell=True, cwd=elsewhere, env=environ, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(done.stdout.split()) == 1


def test_patients_index_checks_its_batch_size_and_is_audited(cli: Any, tmp_path: Path) -> None:
    code, _, err = cli("patients", "index", "--batch-size", "0")
    assert (code, err) == (2, "woundcare: error: --batch-size must be at least 1\n")
    code, out, err = cli("patients", "index")
    assert (code, out, err) == (0, "0 patients indexed\n", "")
    audit = _query(tmp_path, select(AuditEvent).where(AuditEvent.action == "admin.patients.index"))
    assert [(a.actor, a.resource) for a in audit] == [("cli", "patients:0")]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stderr", "shown"),
    [
        (_Terminal, "\rindexing [#######.......................] 1/4\rindexing [##############################] 4/4\n"),
        (io.StringIO, "indexing: 1/4\nindexing: 4/4\n"),
    ],
)
def test_progress_is_a_bar_on_a_terminal_and_plain_lines_elsewhere(
    stderr: type[io.StringIO], shown: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = stderr()
    monkeypatch.setattr(sys, "stderr", stream)
    show = _progress("indexing")
    show(1, 4)
    show(4, 4)
    assert stream.getvalue() == shown


def test_the_server_spares_the_collector() -> None:
    """Once started, the server's start-up heap is frozen, and its youngest generation is
    collected every ``YOUNG_COLLECTION_EVERY`` allocations, not Python's 700 (at 700 most joins
    paid a collection of the objects of the joins still in flight), the middle one about as
    often as before. In a child process, so that this one's collector is left as it is."""
    code = (
        "import gc\n"
        "from woundcare.cli import MIDDLE_COLLECTION_EVERY, YOUNG_COLLECTION_EVERY, _spare_the_collector\n"
        "young, _, oldest = gc.get_threshold()\n"
        "_spare_the_collector()\n"
        "assert gc.get_freeze_count() > 0\n"
        "assert gc.get_threshold() == (YOUNG_COLLECTION_EVERY, MIDDLE_COLLECTION_EVERY, oldest), gc.get_threshold()\n"
        "assert YOUNG_COLLECTION_EVERY > young\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=child_environ({}), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
