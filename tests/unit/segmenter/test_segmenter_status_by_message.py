"""Issue 5: statuses are matched by the message, never dropped for their recipient. The sender's own status
of a send names the person and the send's idempotency key; a later status of that send whose recipient is
missing, a BSUID nobody knows, or a wa_id that maps to nobody still reaches that person."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from segmenter_factories import PHONE, T0, FakeStore, event, record

from scrm_common.clock import FixedClock
from scrm_common.kafka.consumer import Item
from segmenter.domain.policy import SegmentPolicy
from segmenter.domain.roster import Roster
from segmenter.handlers import ApplyEvents, SegmenterMetrics

H = timedelta(hours=1)
KEY = "shop:winback:cust-1:2026-03-01"
UNKNOWN_WA = "999123456789"

RECIPIENTS: dict[str, dict[str, Any]] = {
    "no-recipient": {"no_contact": True},
    "bsuid-only": {"external_id": None, "phone": None, "user_id": "US.7730012345678901"},
    "unmappable-wa-id": {"external_id": None, "phone": None, "wa_id": UNKNOWN_WA},
}


def sent(*, status: str = "sent", key: str = KEY, external_id: str | None = "cust-1", phone: str | None = PHONE,
         at=T0 + H) -> Any:
    """The sender's outcome event: the number sent to, the wa_id Meta answered with, the send's key."""
    return event("message.status", external_id=external_id, phone=phone, wa_id=PHONE[1:], at=at,
                 message_id="wamid.s1" if status == "sent" else None, status=status, idempotency_key=key)


def later(status: str, recipient: str, *, key: str | None = KEY, at=T0 + 2 * H) -> Any:
    data = {"idempotency_key": key} if key is not None else {}
    return event("message.status", at=at, message_id="wamid.s1", status=status, **RECIPIENTS[recipient], **data)


def _handler(store: FakeStore):
    registry = CollectorRegistry()
    return ApplyEvents(store=store, clock=FixedClock(T0 + 3 * H), policy=SegmentPolicy(),
                       metrics=SegmenterMetrics(registry)), registry


async def _apply(handle, *batches) -> None:
    for batch in batches:
        await handle([Item(None, record(e)) for e in batch])


@pytest.mark.parametrize("recipient", list(RECIPIENTS))
@pytest.mark.parametrize("one_batch", [False, True], ids=["batches", "one-batch"])
async def test_a_read_of_our_message_reaches_the_person_it_was_sent_to(recipient, one_batch):
    store = FakeStore()
    handle, registry = _handler(store)
    events = [event("contact.created", external_id="cust-1", phone=PHONE, name="Anna", at=T0), sent(),
              later("read", recipient)]
    await _apply(handle, *([events] if one_batch else [[e] for e in events]))
    row = store.contacts[("shop", "cust-1")]
    assert row.features.last_read_at == T0 + 2 * H
    assert "read_no_reply" in row.tags
    # the unknown recipient is not taken for the person: no alias, phone or wa_id learned from it
    assert (row.features.phone, row.features.wa_id) == (PHONE, PHONE[1:])
    assert set(store.aliases) == {("shop", a) for a in ("ext:cust-1", f"phone:{PHONE}", f"wa:{PHONE[1:]}",
                                                        f"match:{PHONE[1:]}")}
    assert store.recipients == {("shop", KEY): "cust-1"}
    assert registry.get_sample_value("scrm_segmenter_events_skipped_total",
                                     {"type": "message.status", "reason": "unknown_contact"}) is None


@pytest.mark.parametrize("recipient", list(RECIPIENTS))
@pytest.mark.parametrize(("case", "learned", "reads"), [
    ("never-sent-by-us", False, False),   # no sender status for the key: nobody to apply it to
    ("other-send's-key", True, False),    # the key of another send is not this one
    ("no-key", True, False),              # an agent app's message: never the platform's
    ("failed-send-teaches-too", True, True),
], ids=lambda v: v if isinstance(v, str) else None)
async def test_only_the_sends_own_key_finds_the_person(recipient, case, learned, reads):
    store = FakeStore()
    handle, registry = _handler(store)
    await _apply(handle, [event("contact.created", external_id="cust-1", phone=PHONE, at=T0)])
    if learned:
        await _apply(handle, [sent(status="failed" if case.startswith("failed") else "sent",
                                   key="k-other" if case == "other-send's-key" else KEY)])
    key = None if case == "no-key" else KEY
    await _apply(handle, [later("read", recipient, key=key)])
    assert (store.contacts[("shop", "cust-1")].features.last_read_at is not None) is reads
    assert len(store.contacts) == 1
    if not reads:
        reason = "not_platform" if key is None else \
            ("no_contact" if recipient == "no-recipient" else "unknown_contact")
        assert registry.get_sample_value("scrm_segmenter_events_skipped_total",
                                         {"type": "message.status", "reason": reason}) == 1


@pytest.mark.parametrize("one_batch", [False, True], ids=["batches", "one-batch"])
@pytest.mark.parametrize("recipient", list(RECIPIENTS))
async def test_the_message_follows_the_person_through_a_re_key_and_a_merge(recipient, one_batch):
    """Sent to a number nobody named yet (keyed by phone), then the shop names it twice: cust-9, then cust-1."""
    store = FakeStore()
    handle, _ = _handler(store)
    batches = [
        [event("contact.created", external_id="cust-1", phone="+4915100000002", at=T0)],
        [sent(external_id=None)],  # creates nobody: the status only applies to a contact that exists …
    ]
    await _apply(handle, *batches)
    assert store.recipients == {}
    events = [
        event("message.inbound", external_id=None, phone=PHONE, at=T0 + H, type="text", text="hi"),
        sent(external_id=None),  # … a contact created by the reply: key "+49…"
        event("contact.updated", external_id="cust-9", phone=PHONE, at=T0 + H),  # re-keyed to cust-9
        event("contact.updated", external_id="cust-9", phone="+4915100000002", at=T0 + H),  # merged with cust-1
        later("read", recipient),
    ]
    await _apply(handle, *([events] if one_batch else [[e] for e in events]))
    (key,) = {k for _, k in store.contacts}
    assert store.contacts[("shop", key)].features.last_read_at == T0 + 2 * H
    assert store.recipients == {("shop", KEY): key}


def test_the_roster_remembers_the_first_contact_a_send_went_to():
    roster = Roster({}, {})
    roster.record("shop", event("contact.created", external_id="cust-1", phone=PHONE, at=T0))
    roster.record("shop", event("contact.created", external_id="cust-2", phone="+4915100000002", at=T0))
    assert roster.record("shop", sent()) == "cust-1"
    # a later status naming another known person applies to them, but the send stays cust-1's
    other = event("message.status", external_id="cust-2", phone="+4915100000002", at=T0 + H, message_id="wamid.s1",
                  status="delivered", idempotency_key=KEY)
    assert roster.record("shop", other) == "cust-2"
    assert roster.recipients == {("shop", KEY): "cust-1"}
    assert roster.record("shop", later("read", "no-recipient")) == "cust-1"
