"""`is_iana_zone`: the names ZoneInfo opens as a zone, and never an exception for any other name."""

from __future__ import annotations

import pytest

from scrm_common.phones import is_iana_zone


@pytest.mark.parametrize(("name", "known"), [
    ("Europe/Berlin", True),
    ("America/Argentina/Buenos_Aires", True),
    ("UTC", True),
    ("Europe", False),  # tzdata directories: ZoneInfo raises IsADirectoryError, not ZoneInfoNotFoundError
    ("Etc", False),
    ("America/Argentina", False),
    ("zone.tab", False),  # a tzdata file that is no zone
    ("Europe/Atlantis", False),
    ("Europe/", False),
    ("../Europe/Berlin", False),
    ("/etc/localtime", False),
    ("", False),
])
def test_a_zone_is_known_only_when_it_opens_as_one(name: str, known: bool) -> None:
    assert is_iana_zone(name) is known
