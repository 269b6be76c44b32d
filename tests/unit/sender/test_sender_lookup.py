"""R-S8: a customer's messages are found by the phone sent to, in any form the caller has it."""

from __future__ import annotations

import pytest

from sender.domain.lookup import phone_forms

DE = (("+4915112345678",), ("4915112345678",))
MX = (("+5215512345678", "+525512345678"), ("5215512345678", "525512345678"))


@pytest.mark.parametrize(("contact", "expected"), [
    ("+4915112345678", DE),
    ("+49 151 1234-5678", DE),
    ("0049 (151) 12345678", DE),
    ("4915112345678", DE),  # a bare wa_id
    (" +49.151.12345678 ", DE),
    ("+5215512345678", MX),  # Mexico's legacy WhatsApp form finds the number stored without the 1
    ("+52 55 1234 5678", (("+525512345678", "+5215512345678"), ("525512345678", "5215512345678"))),
    ("+55 11 8765-4321", (("+551187654321", "+5511987654321"), ("551187654321", "5511987654321"))),
    ("+54 9 11 2345 6789", (("+5491123456789", "+541123456789"), ("5491123456789", "541123456789"))),
    ("cust-42", ((), ())),
    ("ana@example.com", ((), ())),
    ("1234", ((), ())),
    ("", ((), ())),
    ("+49 151 abc", ((), ())),
])
def test_phone_forms(contact: str, expected: tuple[tuple[str, ...], tuple[str, ...]]) -> None:
    assert phone_forms(contact) == expected
