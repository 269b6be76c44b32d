"""The contact's zone for the send gate: their own, else their number's (deterministic), else UTC."""

from __future__ import annotations

import pytest

from sender.domain.gate.zone import contact_zone, number_zone


def test_own_zone_wins_over_the_number() -> None:
    assert contact_zone("America/Sao_Paulo", "4915112345678") == ("America/Sao_Paulo", False)


@pytest.mark.parametrize(("number", "zone"), [
    ("4915112345678", "Europe/Berlin"),  # one zone for the prefix
    ("12125551234", "America/New_York"),  # NANP: the area code's own zone
    ("+525512345678", "America/Mexico_City"),  # an E.164 form works too
    ("5511987654321", "America/Sao_Paulo"),
])
def test_single_zone_prefixes(number: str, zone: str) -> None:
    assert contact_zone(None, number) == (zone, True)


def test_several_zone_prefix_is_the_countrys_main_zone_every_time() -> None:
    # Russia's mobiles and Australia's span many zones: the country's most populous one (MAIN_ZONE), always.
    russia = [contact_zone(None, "79161234567") for _ in range(3)]
    australia = contact_zone(None, "61412345678")
    assert russia == [("Europe/Moscow", True)] * 3
    assert australia == ("Australia/Sydney", True)
    assert contact_zone(None, "18005551234") == ("America/New_York", True)  # US toll-free: every US zone
    assert contact_zone(None, "5215512345678") == ("America/Mexico_City", True)  # Mexico's wa_id form


@pytest.mark.parametrize("number", [None, "", "999", "0000000", "+"])
def test_unknown_numbers_are_utc(number: str | None) -> None:
    assert number_zone(number) == "UTC"
    assert contact_zone(None, number) == ("UTC", True)


def test_an_own_zone_the_tz_database_lacks_falls_back_to_the_number() -> None:
    assert contact_zone("Mars/Olympus_Mons", "4915112345678") == ("Europe/Berlin", True)
