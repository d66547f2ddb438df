"""The subject strings: what is read back as a user or a device, and what never is."""

from __future__ import annotations

from woundcare.refs import Kind, device_ref, guest_ref, parse, user_ref


def test_users_and_devices_read_back_as_themselves() -> None:
    assert parse(user_ref(41)) == (Kind.USER, 41)
    assert parse(device_ref(41)) == (Kind.DEVICE, 41)
    assert user_ref(41) != device_ref(41)


def test_guests_and_the_old_recorder_are_never_read_as_staff_or_devices() -> None:
    # Their refs reach the same audit trail and session log as users' (access log, FHIR export);
    # ``rec-<id>`` is the retired server-side recorder's, still in older entries.
    assert parse("rec-41") is None
    assert all(parse(guest_ref()) is None for _ in range(50))
    assert guest_ref() != guest_ref()
