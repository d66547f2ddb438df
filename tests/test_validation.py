"""The one way a client's JSON is checked: pydantic models, errors in our words only."""

from __future__ import annotations

import pytest

from woundcare.api.body import Login, NewPatient, RegionChoice, Travel
from woundcare.errors import InvalidInput
from woundcare.validation import StrictObject, parse

LONG = "A" * 5000
NATIONAL_ID = "01018012371"
"""Valid control digits (a synthetic number)."""


@pytest.mark.parametrize(
    ("model", "data", "message"),
    [
        (RegionChoice, {}, "'region' is required"),
        (RegionChoice, {"region": None}, "'region' is required"),
        (RegionChoice, {"region": "   "}, "'region' must be text of 1-32 characters"),
        (RegionChoice, {"region": 7}, "'region' must be text of 1-32 characters"),
        (RegionChoice, {"region": LONG}, "'region' must be text of 1-32 characters"),
        (NewPatient, {"region": "east", "nationalId": LONG}, "'nationalId' must be text of 1-20 characters"),
        (Login, {"username": "kari", "password": ""}, "'password' is required"),
        (Login, {"username": "kari", "password": LONG}, "'password' is required"),
        (Travel, {"region": "east", "municipality": "Hamar", "km": True}, "'km' must be a number from 0 to 2000"),
        (Travel, {"region": "east", "municipality": "Hamar", "km": 1, "hours": 48.5}, "'hours' must be a number from 0 to 48"),
    ],
)
def test_bodies_name_the_broken_rule_never_the_input(model: type, data: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse(model, data)
    assert caught.value.message == message
    assert "AAAA" not in str(caught.value)


def test_bodies_strip_text_ignore_extras_and_default_optionals() -> None:
    patient = parse(NewPatient, {"region": " east ", "nationalId": NATIONAL_ID, "name": "Kari", "other": 1})
    assert (patient.region, patient.national_id, patient.municipality) == ("east", NATIONAL_ID, None)
    spaced = parse(NewPatient, {"region": "east", "nationalId": "010180 123 71", "name": "Kari"})
    assert spaced.national_id == NATIONAL_ID  # normalized with its check, as records store it
    login = parse(Login, {"username": "kari", "password": " pw ", "totp": 123456})
    assert (login.password, login.totp) == (" pw ", None)


@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        ({"nationalId": "01018012372"}, "bad_national_id", "'nationalId' is not a valid Norwegian identity number"),
        ({"nationalId": "0101801237"}, "bad_national_id", "'nationalId' is not a valid Norwegian identity number"),
        ({"nationalId": LONG, "name": ""}, "bad_request", "'nationalId' must be text of 1-20 characters"),
        ({"nationalId": NATIONAL_ID}, "bad_request", "'name' is required"),
        ({"region": None, "nationalId": "x"}, "bad_request", "'region' is required"),
    ],
)
def test_a_new_patient_is_checked_in_the_order_of_the_form(data: dict[str, object], code: str, message: str) -> None:
    # Region, then the identity number (shape, then control digits), then the name: the
    # number's own code comes before anything about the name, which is missing in each.
    with pytest.raises(InvalidInput) as caught:
        parse(NewPatient, {"region": "east", **data})
    assert (caught.value.code, caught.value.message) == (code, message)


class _Pair(StrictObject):
    left: int
    right: int = 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "pair must be an object"),
        ({"left": 1, LONG: 2}, "pair has an unknown field; it takes left, right"),
        ({"right": 1}, "pair lacks 'left'"),
        ({"left": "x"}, "left is not valid"),
    ],
)
def test_strict_objects_refuse_other_shapes_first(data: object, message: str) -> None:
    rules = {"object": "{where} must be an object", "unknown_field": "{where} has an unknown field; it takes {fields}", "lacks": "{where} lacks '{field}'"}
    with pytest.raises(InvalidInput, match=f"^{message}$"):
        parse(_Pair, data, rules, root="pair")
