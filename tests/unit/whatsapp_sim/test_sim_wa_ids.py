"""The wa_id the simulator answers for a number, as WhatsApp does (CLOUD-API.md §1)."""

from __future__ import annotations

import pytest

from scrm_common.identity import match_key
from whatsapp_sim.config import SimulatorSettings
from whatsapp_sim.domain.wa_ids import WaIdRules

OLD_SP = "5511987654321"  # São Paulo mobile, registered on WhatsApp before the 9th digit


@pytest.mark.parametrize(("rules", "digits", "wa_id"), [
    (WaIdRules(), "525512345678", "5215512345678"),  # Mexico City mobile as shops store it
    (WaIdRules(), "523312345678", "5213312345678"),  # Guadalajara
    (WaIdRules(), "5215512345678", "5215512345678"),  # already the WhatsApp form
    (WaIdRules(), OLD_SP, OLD_SP),  # a Brazilian mobile not configured as old keeps its 9 digits
    (WaIdRules(br_legacy=frozenset({OLD_SP})), OLD_SP, "551187654321"),
    (WaIdRules(br_legacy=frozenset({OLD_SP})), "5521998765432", "5521998765432"),  # not in the set
    (WaIdRules(br_legacy_all=True), "5521998765432", "552198765432"),
    (WaIdRules(br_legacy_all=True), "551123456789", "551123456789"),  # a landline has no 9th digit
    (WaIdRules(br_legacy_all=True), "5511923456789", "5511923456789"),  # 9 then 2: not a mobile pattern
    (WaIdRules(br_legacy_all=True), "4915112345678", "4915112345678"),
    (WaIdRules(br_legacy_all=True), "5491123456789", "5491123456789"),  # Argentina as given
    (WaIdRules(), "16505551234", "16505551234"),
])
def test_wa_id_for(rules: WaIdRules, digits: str, wa_id: str) -> None:
    assert rules.wa_id_for(digits) == wa_id
    assert match_key(wa_id) == match_key(digits)  # the platform's fallback rule maps it back


@pytest.mark.parametrize(("spec", "rules"), [
    ("", WaIdRules()),
    ("  ", WaIdRules()),
    ("*", WaIdRules(br_legacy_all=True)),
    ("+55 11 98765-4321", WaIdRules(br_legacy=frozenset({OLD_SP}))),
    ("+55 11 98765-4321, 5521998765432,", WaIdRules(br_legacy=frozenset({OLD_SP, "5521998765432"}))),
])
def test_parsing_the_old_brazilian_mobiles(spec: str, rules: WaIdRules) -> None:
    assert WaIdRules.parse(spec) == rules


@pytest.mark.parametrize("spec", ["+49 151 12345678", "551187654321", "5511923456789", "abc"])
def test_a_number_that_is_no_nine_digit_brazilian_mobile_is_refused_at_start(spec: str) -> None:
    with pytest.raises(ValueError, match="not a Brazilian mobile"):
        SimulatorSettings(simulator_br_legacy_numbers=spec)
