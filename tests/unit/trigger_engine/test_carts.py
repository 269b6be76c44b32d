"""The person's carts as the flows remember them (slot `carts`, R-T6): open, emptied, purchased; out of order."""

from __future__ import annotations

from datetime import timedelta

from trigger_engine.domain.carts import cart, evolve_carts, open_cart_skus

from .factories import T0, profile
from .test_abandoned_cart import cart_event, line, paid


def test_cart_updated_remembers_the_cart_open_with_its_items():
    p = evolve_carts(profile(), cart_event([line("Shoes", 59.0, 2, category="Apparel", stock=3, sku="S1")]))
    c = cart(p, "c-1")
    assert c is not None and c.open and c.total == 118.0 and c.currency == "EUR"
    assert [(i.sku, i.quantity, i.stock, i.category) for i in c.items] == [("S1", 2, 3, "Apparel")]
    assert open_cart_skus(p) == {"S1"}


def test_an_older_event_does_not_overwrite_a_newer_cart():
    p = evolve_carts(profile(), cart_event([line("New", 5.0, sku="N")], at=T0 + timedelta(minutes=5)))
    p = evolve_carts(p, cart_event([line("Old", 5.0, sku="O")], at=T0))
    assert open_cart_skus(p) == {"N"}


def test_empty_cart_is_emptied_and_payment_by_cart_id_purchases_even_an_unknown_cart():
    p = evolve_carts(profile(), cart_event([line("Shoes", 59.0)]))
    p = evolve_carts(p, cart_event([], at=T0 + timedelta(minutes=1), total=0.0))
    assert cart(p, "c-1").status == "emptied"  # type: ignore[union-attr]
    p = evolve_carts(p, paid(cart_id="never-seen", at=T0 + timedelta(minutes=2)))
    assert cart(p, "never-seen").status == "purchased"  # type: ignore[union-attr]
    late = evolve_carts(p, cart_event([line("X", 1.0)], cart_id="never-seen", at=T0))
    assert cart(late, "never-seen").status == "purchased"  # type: ignore[union-attr]


def test_payment_without_cart_id_closes_open_carts_updated_at_or_before_it():
    p = evolve_carts(profile(), cart_event([line("A", 1.0)], cart_id="a", at=T0))
    p = evolve_carts(p, cart_event([line("B", 1.0)], cart_id="b", at=T0 + timedelta(minutes=10)))
    p = evolve_carts(p, paid(cart_id=None, at=T0 + timedelta(minutes=5)))
    assert cart(p, "a").status == "purchased" and cart(p, "a").closed_at == T0 + timedelta(minutes=5)  # type: ignore[union-attr]
    assert cart(p, "b").open  # type: ignore[union-attr]


def test_closed_carts_are_forgotten_after_30_days():
    p = evolve_carts(profile(), cart_event([line("A", 1.0)], cart_id="a", at=T0))
    p = evolve_carts(p, paid(cart_id="a", at=T0))
    p = evolve_carts(p, cart_event([line("B", 1.0)], cart_id="b", at=T0 + timedelta(days=31)))
    assert cart(p, "a") is None and cart(p, "b") is not None


def test_a_late_cart_update_from_before_the_purchase_does_not_reopen_the_cart():
    """Cart at T0, purchase at T0+10 min, then the shop's cart update of T0+5 min arrives late: still purchased."""
    p = evolve_carts(profile(), cart_event([line("Shoes", 59.0)], at=T0))
    p = evolve_carts(p, paid(cart_id="c-1", at=T0 + timedelta(minutes=10)))
    p = evolve_carts(p, cart_event([line("Shoes", 59.0), line("Socks", 5.0, sku="S")], at=T0 + timedelta(minutes=5)))
    assert cart(p, "c-1").status == "purchased" and open_cart_skus(p) == frozenset()  # type: ignore[union-attr]
    p = evolve_carts(profile(), cart_event([line("A", 1.0)], at=T0))
    p = evolve_carts(p, paid(cart_id=None, at=T0 + timedelta(minutes=10)))
    p = evolve_carts(p, cart_event([line("A", 1.0)], at=T0 + timedelta(minutes=5)))
    assert cart(p, "c-1").status == "purchased"  # type: ignore[union-attr]
    # a cart update after the purchase is a new cart under the same id: open again
    p = evolve_carts(p, cart_event([line("A", 1.0)], at=T0 + timedelta(minutes=11)))
    assert cart(p, "c-1").open  # type: ignore[union-attr]
