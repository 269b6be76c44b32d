"""Ingest's pure rules for tenants and keys, and for the phone number routing learnt from account events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ingest.domain.numbers import AccountChange, NumberState, apply_change
from ingest.domain.tenants import (
    KEY_PREFIX_LENGTH,
    UNKNOWN_PREFIX,
    is_key_id,
    key_id,
    key_prefix,
    last_use_due,
    shown_prefix,
    status_of,
    tenant_id_problem,
)

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
LATER, EARLIER = T0 + timedelta(minutes=5), T0 - timedelta(minutes=5)


@pytest.mark.parametrize(("tenant", "ok"), [
    ("acme", True), ("a1", True), ("0shop", True), ("shop-2", True), ("a" * 63, True),
    ("a", False),  # too short
    ("a" * 64, False),  # too long
    ("-acme", False), ("Acme", False), ("ac_me", False), ("ac me", False), ("acmé", False), ("", False),
    ("acme\n", False),
])
def test_tenant_ids(tenant: str, ok: bool) -> None:
    assert (tenant_id_problem(tenant) is None) is ok


@pytest.mark.parametrize(("value", "ok"), [
    ("key_3fa9c1d2e4b5", True), ("key_3FA9C1D2E4B5", False), ("key_3fa9c1d2e4b", False), ("3fa9c1d2e4b5", False),
    ("key_3fa9c1d2e4b5x", False), ("key_3fa9c1d2e4bg", False),
])
def test_key_ids(value: str, ok: bool) -> None:
    assert is_key_id(value) is ok


def test_a_key_id_is_made_of_twelve_hex_digits_only() -> None:
    assert key_id("0123456789ab") == "key_0123456789ab"
    for bad in ("0123456789a", "0123456789abc", "0123456789AB", "zz23456789ab"):
        with pytest.raises(ValueError, match="12 lowercase hex digits"):
            key_id(bad)


def test_prefixes_keep_the_first_twelve_characters_and_old_keys_show_a_placeholder() -> None:
    key = "scrm_" + "Xq2b7LpAbCdEfGh"
    assert key_prefix(key) == key[:KEY_PREFIX_LENGTH] == "scrm_Xq2b7Lp"
    assert shown_prefix("scrm_Xq2b7Lp") == "scrm_Xq2b7Lp"
    assert shown_prefix(None) == UNKNOWN_PREFIX == "scrm_…"


def test_status_follows_disabled_at() -> None:
    assert status_of(None) == "active"
    assert status_of(T0) == "disabled"


@pytest.mark.parametrize(("last_used", "now", "due"), [
    (None, T0, True),
    (T0, T0 + timedelta(seconds=59), False),
    (T0, T0 + timedelta(seconds=60), True),
    (T0, T0 + timedelta(hours=3), True),
])
def test_last_use_is_recorded_at_most_once_a_minute(last_used: datetime | None, now: datetime, due: bool) -> None:
    assert last_use_due(last_used, now) is due


def _reg(tenant: str, at: datetime, waba: str | None = "W1", number: str = "P1") -> AccountChange:
    return AccountChange(tenant, number, waba, True, at)


def _rem(tenant: str, at: datetime, waba: str | None = "W1", number: str = "P1") -> AccountChange:
    return AccountChange(tenant, number, waba, False, at)


SEEDED = NumberState("demo", "W1", None)  # the bootstrap's row: no account event yet
OWNED_BY_A = NumberState("a", "W1", T0)
REMOVED_BY_A = NumberState("a", "W1", T0, removed=True)

APPLY_CASES = [
    # (case, current, change, expected new state or None for "no change")
    ("a new number is registered", None, _reg("a", T0), NumberState("a", "W1", T0)),
    ("an event overrides the bootstrap's seed", SEEDED, _reg("a", EARLIER), NumberState("a", "W1", EARLIER)),
    ("the owner's newer registration updates the WABA", OWNED_BY_A, _reg("a", LATER, "W2"),
     NumberState("a", "W2", LATER)),
    ("a registration without a WABA keeps the owner's", OWNED_BY_A, _reg("a", LATER, None),
     NumberState("a", "W1", LATER)),
    ("a registration without a WABA for another tenant has none", OWNED_BY_A, _reg("b", LATER, None),
     NumberState("b", None, LATER)),
    ("another tenant's newer registration takes the number", OWNED_BY_A, _reg("b", LATER, "W9"),
     NumberState("b", "W9", LATER)),
    ("an older registration changes nothing", OWNED_BY_A, _reg("b", EARLIER), None),
    ("the same event again changes nothing", OWNED_BY_A, _reg("a", T0), None),
    ("the owner's removal leaves a tombstone", OWNED_BY_A, _rem("a", LATER), NumberState("a", "W1", LATER, True)),
    ("another tenant's removal changes nothing", OWNED_BY_A, _rem("b", LATER), None),
    ("another tenant's removal does not touch the seed", SEEDED, _rem("b", LATER), None),
    ("the seed's tenant may remove it", SEEDED, _rem("demo", T0), NumberState("demo", "W1", T0, True)),
    ("an older removal changes nothing", OWNED_BY_A, _rem("a", EARLIER), None),
    ("a removal of an unknown number leaves a tombstone", None, _rem("a", T0), NumberState("a", "W1", T0, True)),
    ("a late registration older than the removal stays removed", REMOVED_BY_A, _reg("a", EARLIER), None),
    ("a newer registration brings it back", REMOVED_BY_A, _reg("a", LATER), NumberState("a", "W1", LATER)),
    ("another tenant registers a removed number", REMOVED_BY_A, _reg("b", LATER, "W7"),
     NumberState("b", "W7", LATER)),
    ("a removal at the same moment as the registration applies", OWNED_BY_A, _rem("a", T0),
     NumberState("a", "W1", T0, True)),
]


@pytest.mark.parametrize(("case", "current", "change", "expected"), APPLY_CASES, ids=[c[0] for c in APPLY_CASES])
def test_account_changes(case: str, current: NumberState | None, change: AccountChange,
                         expected: NumberState | None) -> None:
    assert apply_change(current, change) == expected, case


def test_the_owner_is_who_webhooks_go_to() -> None:
    assert OWNED_BY_A.owner == "a"
    assert REMOVED_BY_A.owner is None


def test_a_removal_and_another_tenants_registration_end_the_same_in_either_order() -> None:
    """They travel in different partitions (the key holds the tenant): whichever comes first, b owns it."""
    removal, registration = _rem("a", T0), _reg("b", LATER, "W2")
    one = apply_change(apply_change(OWNED_BY_A, removal), registration)
    first = apply_change(OWNED_BY_A, registration)
    other = apply_change(first, removal) or first
    assert one == other == NumberState("b", "W2", LATER)
