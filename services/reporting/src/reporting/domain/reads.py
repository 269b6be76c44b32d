"""Which event types reporting reads; every other type is skipped before it is parsed."""

from __future__ import annotations

# Statuses and replies (R-R1 sent … replied), clicks, purchases and revenue.
EVENTS_READ: frozenset[str] = frozenset({"message.status", "message.inbound", "link.clicked", "payment.succeeded"})

# Known and deliberately not counted here: shop facts other than payments, and the platform's contact,
# account and template signals. A contract type in neither set is a decision still to make (a test
# fails until it is made).
EVENTS_IGNORED: frozenset[str] = frozenset({
    "contact.created", "contact.updated", "cart.updated", "payment.failed", "shipment.updated",
    "order.returned", "product.price_changed", "feedback.submitted", "contact.marketing_preference_changed",
    "contact.number_changed", "account.updated", "template.updated", "account.registered", "account.removed",
})
