"""R-S7's late retry in the segmenter: a first attempt that failed, then the retry 24 h later under the same
idempotency key with a new wamid (sent, delivered, read) leaves one contact tagged by what the person did —
whatever order the statuses arrive in."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry
from segmenter_factories import PHONE, T0, FakeStore, event, inbound, record

from scrm_common.clock import FixedClock
from scrm_common.kafka.consumer import Item
from segmenter.domain.policy import SegmentPolicy
from segmenter.handlers import ApplyEvents, SegmenterMetrics

H = timedelta(hours=1)
D = timedelta(days=1)
KEY = "shop:order_confirmation:o-1"
WA = PHONE.lstrip("+")


def _sender(status: str, wamid: str | None, at, suffix: str = ""):
    """The sender's own outcome: the number sent to, the wa_id Meta answered, the shop's id, the key."""
    return event("message.status", external_id="cust-1", phone=PHONE, wa_id=WA if wamid else None, at=at,
                 event_id=f"send:digest:{status}{suffix}", message_id=wamid, status=status, idempotency_key=KEY)


def _webhook(status: str, wamid: str, at, **data):
    """Meta's status of our message: the recipient's wa_id, the echoed key (biz_opaque_callback_data)."""
    return event("message.status", external_id=None, phone=PHONE, wa_id=WA, at=at, message_id=wamid,
                 status=status, idempotency_key=KEY, **data)


STORY = {
    "first_sent": lambda: _sender("sent", "wamid.1", T0),
    "first_failed": lambda: _webhook("failed", "wamid.1", T0 + H, error_code=131026),
    "late_sent": lambda: _sender("sent", "wamid.2", T0 + H + D, ":late"),
    "late_delivered": lambda: _webhook("delivered", "wamid.2", T0 + 2 * H + D),
    "late_read": lambda: _webhook("read", "wamid.2", T0 + 3 * H + D),
}
NOW = T0 + 4 * H + D


async def _play(names, *, then=()):
    store = FakeStore()
    handle = ApplyEvents(store=store, clock=FixedClock(NOW), policy=SegmentPolicy(),
                         metrics=SegmenterMetrics(CollectorRegistry()))
    await handle([Item(None, record(event("contact.created", external_id="cust-1", phone=PHONE, name="Anna",
                                          at=T0 - D)))])
    for name in names:
        await handle([Item(None, record(STORY[name]()))])
    for ev in then:
        await handle([Item(None, record(ev))])
    assert set(store.contacts) == {("shop", "cust-1")}
    return store.contacts[("shop", "cust-1")]


@pytest.mark.parametrize("order", list(itertools.permutations(STORY)), ids="-".join)
async def test_fail_then_late_sent_delivered_read_tags_the_contact_by_the_retrys_read_in_any_order(order):
    row = await _play(order)
    f = row.features
    assert (f.last_read_at, f.phone, f.wa_id, f.name) == (T0 + 3 * H + D, PHONE, WA, "Anna")
    assert "read_no_reply" in row.tags  # read the retry, wrote nothing
    assert row.activity_tier == "dormant"  # a status is no reply
    assert f.inbound_messages == 0


@pytest.mark.parametrize("order", [tuple(STORY), tuple(reversed(STORY))], ids=["in-order", "reversed"])
async def test_a_reply_after_the_retrys_read_clears_read_no_reply(order):
    row = await _play(order, then=[inbound(external_id=None, phone=None, wa_id=WA, at=T0 + 3 * H + D + H / 2)])
    assert "read_no_reply" not in row.tags
    assert row.activity_tier == "high"


async def test_the_failed_first_attempt_alone_tags_nothing():
    row = await _play(["first_sent", "first_failed"])
    assert row.features.last_read_at is None
    assert "read_no_reply" not in row.tags
