"""R-S7's late retry in the reports: one message per idempotency key, whatever wamid each attempt got.

The sender retries a failed send (131026 / 131049) once after 24 h under the same idempotency key; the
provider gives the retry a new wamid, and the sender publishes a second "sent" (`send:<digest>:sent:late`).
The message then counts as sent (on its first attempt's day) and delivered/read by the retry's
receipts; its first failure is withdrawn. Only a failed latest attempt leaves it in `failed`.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from reporting_factories import T0, FakeStore, inbound, items, played, status, summed_deltas

from reporting.domain.ledger import Ledger
from reporting.domain.messages import Message, Metric, StatusSeen, add_into, contributions
from reporting.domain.policy import ReportPolicy
from reporting.handlers import ApplyEvents, ReportingMetrics

H = timedelta(hours=1)
D = timedelta(days=1)
DAY0, DAY1 = T0.date(), (T0 + D).date()
KEY = "tenant:order_confirmation:o-1"
DIGEST = "0f" * 16


def _handler(store: FakeStore) -> ApplyEvents:
    return ApplyEvents(store=store, policy=ReportPolicy(), metrics=ReportingMetrics(CollectorRegistry()))


def first_sent(at=T0):
    """The sender's outcome of the first attempt: wamid.1, with the send's key."""
    return status("sent", message_id="wamid.1", at=at, idempotency_key=KEY, flow="order_confirmation",
                  account_id="acc-1", category="utility", external_id="cust-1", event_id=f"send:{DIGEST}:sent")


def first_failed(at=T0 + H, code=131026):
    """Meta's webhook: the first attempt could not be delivered (it echoes the key)."""
    return status("failed", message_id="wamid.1", at=at, idempotency_key=KEY, error_code=code, phone=None,
                  wa_id="4915112345678")


def late_sent(at=T0 + H + D):
    """The sender's outcome of the one retry 24 h later: same key, new wamid, its own event id."""
    return status("sent", message_id="wamid.2", at=at, idempotency_key=KEY, flow="order_confirmation",
                  account_id="acc-1", category="utility", external_id="cust-1",
                  event_id=f"send:{DIGEST}:sent:late")


def late(kind, at):
    """A webhook status of the retry's wamid."""
    return status(kind, message_id="wamid.2", at=at, idempotency_key=KEY, phone=None, wa_id="4915112345678")


def late_delivered(at=T0 + 2 * H + D):
    return late("delivered", at)


def late_read(at=T0 + 3 * H + D):
    return late("read", at)


STORY = {"first_sent": first_sent, "first_failed": first_failed, "late_sent": late_sent,
         "late_delivered": late_delivered, "late_read": late_read}


def per_day(store: FakeStore) -> dict[tuple[str, object], int]:
    return {(cell[2].value, cell[0]): n for (_, cell), n in store.counts.items() if n}


# --- the story in every arrival order -----------------------------------------------------------------

@pytest.mark.parametrize("order", list(itertools.permutations(STORY)), ids="-".join)
async def test_fail_then_late_sent_delivered_read_counts_one_delivered_message_in_any_order(order):
    store = await played(STORY[name]() for name in order)
    assert per_day(store) == {("attempted", DAY0): 1, ("sent", DAY0): 1,
                              ("delivered", DAY1): 1, ("read", DAY1): 1}
    (message,) = store.msgs.values()
    assert (message.message_id, message.attempt_id, message.failed_at) == ("wamid.1", "wamid.2", None)
    assert message.flow == "order_confirmation"


async def test_the_whole_story_in_one_batch_counts_the_same():
    store = FakeStore()
    await _handler(store)(items(*(make() for make in reversed(STORY.values()))))
    assert per_day(store) == {("attempted", DAY0): 1, ("sent", DAY0): 1, ("delivered", DAY1): 1, ("read", DAY1): 1}
    assert len(store.msgs) == 1


async def test_the_first_failure_counts_until_the_late_retry_is_sent_and_is_then_withdrawn():
    store = FakeStore()
    handle = _handler(store)
    await handle(items(first_sent(), first_failed()))
    assert per_day(store) == {("attempted", DAY0): 1, ("sent", DAY0): 1, ("failed", DAY0): 1}
    await handle(items(late_sent()))
    assert per_day(store) == {("attempted", DAY0): 1, ("sent", DAY0): 1}
    assert store.counts[("shop", (DAY0, "order_confirmation", Metric.FAILED))] == 0


@pytest.mark.parametrize(("retry", "failed_on"), [
    # the retry is accepted, then Meta reports it undeliverable too
    ([late_sent, lambda: late("failed", T0 + 2 * H + D)], DAY1),
    # the retry is refused at once (no wamid): the sender's final "failed" outcome
    ([lambda: status("failed", message_id=None, at=T0 + H + D, idempotency_key=KEY, flow="order_confirmation",
                     error_code=131026, external_id="cust-1", event_id=f"send:{DIGEST}:failed")], DAY1),
], ids=["retry-failed-by-webhook", "retry-refused"])
@pytest.mark.parametrize("reverse", [False, True], ids=["in-order", "reversed"])
async def test_a_message_whose_late_retry_fails_too_counts_as_failed_once_on_the_retrys_day(retry, failed_on,
                                                                                             reverse):
    story = [first_sent, first_failed, *retry]
    store = await played(make() for make in (reversed(story) if reverse else story))
    assert per_day(store) == {("attempted", DAY0): 1, ("sent", DAY0): 1, ("failed", failed_on): 1}
    assert len(store.msgs) == 1


async def test_a_reply_after_the_late_retry_is_that_messages_reply():
    store = FakeStore()
    handle = _handler(store)
    await handle(items(first_sent(), first_failed(), late_sent(), late_delivered()))
    await handle(items(inbound(at=T0 + 4 * H + D)))
    assert per_day(store)[("replied", DAY1)] == 1
    assert sum(n for (metric, _), n in per_day(store).items() if metric == "replied") == 1


@pytest.mark.parametrize("one_batch", [False, True], ids=["apart", "one-batch"])
async def test_a_status_of_the_retry_ahead_of_its_key_is_kept_apart_then_joins_the_message(one_batch):
    """Meta's status without the echoed key for wamid.2 starts a row of its own; the late "sent" (with
    the key) claims the wamid, and the two rows become one."""
    store = FakeStore()
    handle = _handler(store)
    await handle(items(first_sent(), first_failed()))
    unkeyed = status("delivered", message_id="wamid.2", at=T0 + 2 * H + D, phone=None, wa_id="4915112345678")
    if one_batch:
        await handle(items(unkeyed, late_sent()))
    else:
        await handle(items(unkeyed))
        assert set(store.msgs) == {("shop", "wamid.1"), ("shop", "wamid.2")}
        await handle(items(late_sent()))
    assert set(store.msgs) == {("shop", "wamid.1")}
    assert per_day(store) == {("attempted", DAY0): 1, ("sent", DAY0): 1, ("delivered", DAY1): 1}


async def test_two_rows_of_one_key_written_before_the_rule_become_one_message():
    """A late retry counted twice by an earlier version: the next status of either wamid heals it."""
    store = FakeStore()
    handle = _handler(store)
    await handle(items(first_sent(), first_failed()))
    legacy = Message(key="wamid.2", message_id="wamid.2", idempotency_key=None, flow="order_confirmation",
                     platform=True, attempt_id="wamid.2", attempt_at=T0 + H + D, attempted_at=T0 + H + D,
                     sent_at=T0 + H + D)
    store.msgs[("shop", "wamid.2")] = legacy
    add_into(store.counts, {("shop", cell): n for cell, n in contributions(legacy).items()})
    assert per_day(store)[("sent", DAY1)] == 1
    await handle(items(late_delivered()))
    assert set(store.msgs) == {("shop", "wamid.1")}
    assert per_day(store) == {("attempted", DAY0): 1, ("sent", DAY0): 1, ("delivered", DAY1): 1}


# --- the domain: attempts combine in any order ----------------------------------------------------------

def _seen(kind: str, wamid: str | None, at, key: str | None = "k-1") -> StatusSeen:
    return StatusSeen(key=wamid or f"idempotency:{key}", status=kind, at=at, message_id=wamid, idempotency_key=key)


# First attempt: statuses within its first hours; the retry a day later; a refusal (no wamid) later still.
_first = st.builds(lambda kind, m: _seen(kind, "wamid.1", T0 + timedelta(minutes=m)),
                   st.sampled_from(["sent", "delivered", "failed"]), st.integers(0, 300))
_retry = st.builds(lambda kind, m: _seen(kind, "wamid.2", T0 + D + timedelta(minutes=m)),
                   st.sampled_from(["sent", "delivered", "read", "failed"]), st.integers(0, 300))
_refusal = st.builds(lambda m: _seen("failed", None, T0 + 2 * D + timedelta(minutes=m)), st.integers(0, 60))


def _fold(facts: list[StatusSeen]) -> Message:
    ledger = Ledger({})
    for f in facts:
        ledger.record("shop", f)
    (message,) = ledger.messages.values()
    return message


@settings(max_examples=300, deadline=None)
@given(facts=st.lists(st.one_of(_first, _retry, _refusal), min_size=1, max_size=10), data=st.data())
def test_attempts_in_any_order_and_multiplicity_give_the_same_counts(facts, data):
    shuffled = data.draw(st.permutations(facts))
    repeated = shuffled + data.draw(st.lists(st.sampled_from(facts), max_size=6))
    a, b = _fold(facts), _fold(repeated)
    assert contributions(a) == contributions(b)
    assert summed_deltas(repeated) == contributions(b)
    counts: dict[Metric, int] = {}
    for (_, _, metric), n in contributions(b).items():
        counts[metric] = counts.get(metric, 0) + n
    assert counts[Metric.ATTEMPTED] == 1
    # failed only when the latest attempt failed: the refusal if any, else the retry's, else the first's
    latest = max((f for f in facts), key=lambda f: (f.message_id is None, f.message_id or ""))
    latest_failed = any(f.status == "failed" and f.message_id == latest.message_id for f in facts)
    assert counts.get(Metric.FAILED, 0) == (1 if latest_failed else 0)
    assert counts.get(Metric.READ, 0) <= counts.get(Metric.DELIVERED, 0) <= counts.get(Metric.SENT, 0) <= 1
