"""The timer loop decides a person's timers of one pass in order, each with what the ones before remembered
(R-T6.2: two drops of one item due together see each other's send)."""

from __future__ import annotations

from trigger_engine.domain.decisions import Remember, Suppress
from trigger_engine.timers import remembered

from .factories import profile


def test_remember_decisions_apply_in_order_and_a_none_deletes_the_key() -> None:
    p = profile()
    p = remembered(p, (Remember("price_drop", p.contact_key, "price_drops", "SKU-1", ["2026-12-01T10:00:00+00:00"]),
                       Suppress("price_drop", "why", p.contact_key)))
    assert dict(p.slot("price_drops")) == {"SKU-1": ["2026-12-01T10:00:00+00:00"]}
    p = remembered(p, (Remember("price_drop", p.contact_key, "price_drops", "SKU-2", [1]),
                       Remember("price_drop", p.contact_key, "price_drops", "SKU-1", None)))
    assert dict(p.slot("price_drops")) == {"SKU-2": [1]}


def test_another_persons_memory_is_not_applied() -> None:
    p = profile()
    assert remembered(p, (Remember("price_drop", "someone-else", "price_drops", "SKU-1", [1]),)).state == p.state
