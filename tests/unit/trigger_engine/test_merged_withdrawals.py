"""A first purchase withdraws the waiting welcome of every person merged into the buyer too (R-T1, issue 8): which
reserved keys a withdrawal of a once-per-person key takes along."""

from __future__ import annotations

import pytest

from trigger_engine.domain.decide import merged_withdrawals, person_key_owner, person_keys
from trigger_engine.domain.decisions import Withdraw

TENANT = "acme"
OWN = f"{TENANT}|welcome|cust-1"
GUEST = f"{TENANT}|welcome|guest-2"
WITHDRAW = Withdraw("welcome", OWN, "cust-1", "cancelled: purchased", "acct-1")


@pytest.mark.parametrize(("key", "owner"), [
    (OWN, (0, "cust-1")),
    (f"{TENANT}|welcome|+4915112345678", (0, "+4915112345678")),
    (f"{TENANT}|welcome|a|b", (0, "a|b")),
    (f"{TENANT}|welcome|", None),
    ("other|welcome|cust-1", None),
    (f"{TENANT}|order_confirmation|A-1", None),
])
def test_a_once_per_person_key_names_its_person(key: str, owner: tuple[int, str] | None) -> None:
    assert person_key_owner(TENANT, key) == owner


def test_every_once_per_person_key_is_known_by_its_owner() -> None:
    for position, key in enumerate(person_keys(TENANT, "guest-2")):
        assert person_key_owner(TENANT, key) == (position, "guest-2")


def test_the_merged_persons_welcomes_are_withdrawn_with_the_buyers() -> None:
    third = f"{TENANT}|welcome|+4915198765432"
    found = merged_withdrawals(TENANT, WITHDRAW, [OWN, GUEST, third, GUEST])
    assert found == (Withdraw("welcome", GUEST, "cust-1", "cancelled: purchased", "acct-1"),
                     Withdraw("welcome", third, "cust-1", "cancelled: purchased", "acct-1"))


def test_keys_of_other_kinds_are_not_withdrawn() -> None:
    assert merged_withdrawals(TENANT, WITHDRAW, [OWN, f"{TENANT}|order_confirmation|A-1", "elsewhere|welcome|x"]) == ()


@pytest.mark.parametrize("withdraw", [
    Withdraw("welcome", f"{TENANT}|cart|c-1", "cust-1", "cancelled: purchased"),  # not a once-per-person key
    Withdraw("welcome", GUEST, "cust-1", "cancelled: purchased"),  # another person's key: itself a merged one
])
def test_only_a_withdrawal_of_the_persons_own_once_per_person_key_takes_others_along(withdraw: Withdraw) -> None:
    assert merged_withdrawals(TENANT, withdraw, [OWN, GUEST, f"{TENANT}|welcome|guest-3"]) == ()
