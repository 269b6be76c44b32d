"""A contact's time zone that names a tzdata directory (`Europe`) is a 422 naming the field, not a 500."""

from __future__ import annotations

import pytest

from tests.unit.ingest.test_ingest_http import KEY, _app, _call, _event


@pytest.mark.parametrize("zone", ["Europe", "Etc", "America/Argentina", "zone.tab"])
async def test_a_tzdata_directory_as_contact_timezone_is_a_422_naming_the_field(zone: str) -> None:
    app, _, producer = _app()
    resp = await _call(app, "POST", "/v1/events", json=_event(timezone=zone), headers={"Authorization": f"Bearer {KEY}"})
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "invalid_events"
    assert "contact.timezone" in [e["field"] for e in resp.json()["errors"]], resp.json()
    assert producer.sent == []


async def test_a_real_zone_is_accepted() -> None:
    app, _, producer = _app()
    resp = await _call(app, "POST", "/v1/events", json=_event(timezone="Europe/Berlin"),
                       headers={"Authorization": f"Bearer {KEY}"})
    assert resp.status_code in (200, 202), resp.text
    assert len(producer.sent) == 1
