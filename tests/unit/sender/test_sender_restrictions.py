"""R-S8 "account restricted": whether an account may send business-initiated messages now, else until when/why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sender.domain.restrictions import (
    DISABLED,
    Blocked,
    Restriction,
    blocked,
    change_from_update,
    error_hold,
    scope_of,
)

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=2)
BIZ = "RESTRICTED_BIZ_INITIATED_MESSAGING"
CUSTOMER = "RESTRICTED_CUSTOMER_INITIATED_MESSAGING"
ADD_PHONE = "RESTRICTED_ADD_PHONE_NUMBER_ACTION"


def _r(kind: str, until: datetime | None) -> Restriction:
    return Restriction(kind, scope_of(kind), until, f"because {kind}")


@pytest.mark.parametrize(("restrictions", "template", "free_form"), [
    ([], None, None),
    ([_r(BIZ, LATER)], Blocked(BIZ, LATER), None),
    ([_r(CUSTOMER, LATER)], None, Blocked(CUSTOMER, LATER)),
    ([_r(ADD_PHONE, LATER)], None, None),  # adding phone numbers is not sending
    ([_r("RESTRICTED_SOMETHING_NEW", LATER)], Blocked("RESTRICTED_SOMETHING_NEW", LATER), None),  # safe side
    ([_r(BIZ, NOW - timedelta(seconds=1))], None, None),  # expired: ignored
    ([_r(BIZ, NOW)], None, None),  # ends now: may send now
    ([_r(DISABLED, None)], Blocked(DISABLED, None), Blocked(DISABLED, None)),
    ([_r(BIZ, LATER), _r(DISABLED, None)], Blocked(DISABLED, None), Blocked(DISABLED, None)),
    ([_r(BIZ, LATER), error_hold(190, NOW + timedelta(minutes=10), "token")], Blocked(BIZ, LATER),
     Blocked("error:190", NOW + timedelta(minutes=10))),
    ([_r(BIZ, NOW + timedelta(hours=1)), _r("RESTRICTED_OTHER", LATER)], Blocked("RESTRICTED_OTHER", LATER), None),
])
def test_what_may_go_now(restrictions: list[Restriction], template: Blocked | None, free_form: Blocked | None) -> None:
    assert blocked(restrictions, business_initiated=True, now=NOW) == template
    assert blocked(restrictions, business_initiated=False, now=NOW) == free_form


@pytest.mark.parametrize(("found", "reason"), [
    (Blocked(BIZ, LATER), f"account restricted ({BIZ}) until 2026-12-02T09:00:00+00:00"),
    (Blocked(BIZ, None), f"account restricted ({BIZ}) until lifted"),
    (Blocked(DISABLED, None), "account disabled by Meta until reinstated"),
    (Blocked("error:131048", LATER), "account held after error 131048 until 2026-12-02T09:00:00+00:00"),
])
def test_the_send_log_reason(found: Blocked, reason: str) -> None:
    assert found.reason == reason


@pytest.mark.parametrize(("kwargs", "upsert", "lift"), [
    ({"event": "ACCOUNT_RESTRICTION", "restrictions": [(BIZ, LATER)]}, [(BIZ, "business_initiated", LATER)], []),
    ({"event": "ACCOUNT_RESTRICTION", "restrictions": [(BIZ, LATER), (ADD_PHONE, LATER)]},
     [(BIZ, "business_initiated", LATER), (ADD_PHONE, "none", LATER)], []),
    ({"event": "ACCOUNT_RESTRICTION", "restrictions": [(BIZ, NOW - timedelta(hours=1))]}, [], [BIZ]),
    ({"event": "ACCOUNT_RESTRICTION", "restrictions": [(CUSTOMER, None)]}, [(CUSTOMER, "customer_initiated", None)],
     []),
    ({"event": "DISABLED_UPDATE", "ban_state": "DISABLE"}, [(DISABLED, "all", None)], []),
    ({"event": "DISABLED_UPDATE"}, [(DISABLED, "all", None)], []),
    ({"event": "DISABLED_UPDATE", "ban_state": "REINSTATE"}, [], [DISABLED]),
    ({"event": "DISABLED_UPDATE", "ban_state": "SCHEDULE_FOR_DISABLE"}, [], []),  # a warning only
    ({"event": "ACCOUNT_VIOLATION"}, [], []),
    ({"event": None, "ban_state": "disable"}, [(DISABLED, "all", None)], []),
])
def test_reading_metas_account_update(kwargs: dict, upsert: list[tuple], lift: list[str]) -> None:
    args = {"event": None, "ban_state": None, "restrictions": [], "detail": None, "now": NOW} | kwargs
    change = change_from_update(**args)
    assert [(r.kind, r.scope, r.until) for r in change.upsert] == upsert
    assert list(change.lift) == lift


def test_the_update_detail_is_the_restrictions_reason() -> None:
    change = change_from_update(event="ACCOUNT_RESTRICTION", ban_state=None, restrictions=[(BIZ, LATER)],
                                detail="Policy violation: scam", now=NOW)
    assert change.upsert[0].reason == "Policy violation: scam"
