"""A reply that names the message it answers (`context_message_id`: a quoted reply, a button press, a
reaction) credits that message — not merely the latest one sent within 24 h — in any arrival order; an
inbound naming nothing we know of falls back to the latest-message rule."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from reporting_factories import OTHER_PHONE, T0, FakeStore, inbound, items, played, sent, status

from reporting.domain.messages import Reply, assign_replies
from reporting.domain.policy import ReportPolicy
from reporting.handlers import ApplyEvents, ReportingMetrics

H = timedelta(hours=1)
D = timedelta(days=1)


def _handler(store: FakeStore) -> ApplyEvents:
    return ApplyEvents(store=store, policy=ReportPolicy(), metrics=ReportingMetrics(CollectorRegistry()))


def replied_by_flow(store: FakeStore) -> dict[str | None, int]:
    out: dict[str | None, int] = {}
    for (_, (_, flow, metric)), n in store.counts.items():
        if metric.value == "replied" and n:
            out[flow] = out.get(flow, 0) + n
    return out


# --- the rule ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("messages", "replies", "expected"), [
    # the customer quotes the older message: it is credited, the latest one is not
    ({"m1": 0, "m2": 2}, [(3, "w1")], {"m1": 3, "m2": None}),
    # named beyond the 24 h window: still that message's reply
    ({"m1": 0}, [(30, "w1")], {"m1": 30}),
    ({"m1": 0, "m2": 2}, [(50, "w1")], {"m1": 50, "m2": None}),
    # a context naming no message of this person: the latest-message rule
    ({"m1": 0, "m2": 2}, [(3, "w.unknown")], {"m1": None, "m2": 3}),
    # a named reply does not take the place of a plain one: the latest message still gets its reply
    ({"m1": 0, "m2": 2}, [(3, "w1"), (4, None)], {"m1": 3, "m2": 4}),
    # replied once, at the earliest reply, named or not
    ({"m1": 0}, [(2, "w1"), (1, None)], {"m1": 1}),
    ({"m1": 0}, [(1, "w1"), (2, None), (3, "w1")], {"m1": 1}),
    # a named reply stamped a moment before the send (clocks differ) still names it
    ({"m1": 5}, [(4, "w1")], {"m1": 4}),
], ids=["quoted-older", "beyond-window", "beyond-window-older", "unknown-context", "named-and-plain",
        "earliest-plain", "earliest-named", "clock-skew"])
def test_a_named_reply_credits_the_message_it_names(messages, replies, expected):
    named = {f"w{k[1:]}": k for k in messages}
    got = assign_replies([(k, T0 + h * H) for k, h in messages.items()],
                         [Reply(T0 + h * H, ctx) for h, ctx in replies], 24 * H, named)
    assert got == {k: (T0 + v * H if v is not None else None) for k, v in expected.items()}


@settings(max_examples=200, deadline=None)
@given(messages=st.dictionaries(st.sampled_from("abcdef"), st.integers(0, 100), max_size=6),
       replies=st.lists(st.tuples(st.integers(-10, 130), st.sampled_from([None, "wa", "wb", "wz"])), max_size=8),
       data=st.data())
def test_named_reply_attribution_depends_only_on_the_sets(messages, replies, data):
    pairs = [(k, T0 + h * H) for k, h in messages.items()]
    inbounds = [Reply(T0 + h * H, ctx) for h, ctx in replies]
    named = {f"w{k}": k for k in messages}
    base = assign_replies(pairs, inbounds, 24 * H, named)
    again = assign_replies(data.draw(st.permutations(pairs)), data.draw(st.permutations(inbounds)) * 2, 24 * H,
                           named)
    assert base == again
    assert sum(1 for v in base.values() if v is not None) <= len(set(inbounds))
    for at, ctx in inbounds:  # a named message is replied no later than its first naming reply
        if ctx in named and named[ctx] in base:
            assert base[named[ctx]] is not None and base[named[ctx]] <= at


# --- through the handler, in every arrival order -----------------------------------------------------------

STORY = {
    "welcome": lambda: sent("wamid.w", flow="welcome", at=T0),
    "cart": lambda: sent("wamid.c", flow="cart", at=T0 + 2 * H),
    "quote": lambda: inbound(at=T0 + 3 * H, context_message_id="wamid.w", type_="button", text="Ja, gerne"),
}


@pytest.mark.parametrize("order", list(itertools.permutations(STORY)), ids="-".join)
async def test_a_reply_quoting_the_older_message_credits_it_not_the_latest_in_any_order(order):
    store = await played(STORY[name]() for name in order)
    assert replied_by_flow(store) == {"welcome": 1}
    assert store.msgs[("shop", "wamid.w")].replied_at == T0 + 3 * H
    assert store.msgs[("shop", "wamid.c")].replied_at is None


@pytest.mark.parametrize("order", list(itertools.permutations([*STORY, "plain"])), ids="-".join)
async def test_a_plain_reply_still_goes_to_the_latest_message_beside_a_named_one(order):
    story = {**STORY, "plain": lambda: inbound(at=T0 + 4 * H, text="Und wann kommt es?")}
    store = await played(story[name]() for name in order)
    assert replied_by_flow(store) == {"welcome": 1, "cart": 1}


@pytest.mark.parametrize("reverse", [False, True], ids=["in-order", "reversed"])
async def test_a_reaction_days_later_is_the_named_messages_reply(reverse):
    story = [sent("wamid.w", flow="welcome", at=T0),
             sent("wamid.c", flow="cart", at=T0 + 2 * D),
             inbound(at=T0 + 2 * D + H, type_="reaction", text="❤️", context_message_id="wamid.w")]
    store = await played(reversed(story) if reverse else story)
    assert replied_by_flow(store) == {"welcome": 1}
    assert store.msgs[("shop", "wamid.w")].replied_at == T0 + 2 * D + H


@pytest.mark.parametrize(("context", "expected"), [
    ("wamid.never-seen", {"cart": 1}),  # nothing we know of: the latest-message rule
    (None, {"cart": 1}),
    ("wamid.agent", {}),  # the agent app's message (a shared number): the customer answered someone else
    ("wamid.to-someone-else", {"cart": 1}),  # a message of another person's: the latest-message rule
], ids=["unknown", "none", "agent-app", "other-person"])
async def test_a_context_naming_no_message_of_ours_to_that_person(context, expected):
    store = FakeStore()
    handle = _handler(store)
    await handle(items(sent("wamid.w", flow="welcome", at=T0), sent("wamid.c", flow="cart", at=T0 + 2 * H),
                       sent("wamid.to-someone-else", flow="winback", at=T0 + H, phone=OTHER_PHONE),
                       status("sent", message_id="wamid.agent", at=T0 + H)))
    await handle(items(inbound(at=T0 + 3 * H, context_message_id=context)))
    assert replied_by_flow(store) == expected


@pytest.mark.parametrize("named", ["wamid.1", "wamid.2"], ids=["first-attempt", "late-retry"])
async def test_a_reply_naming_either_attempt_of_a_late_retried_message_credits_it(named):
    key = "shop:welcome:cust-1"
    store = FakeStore()
    handle = _handler(store)
    await handle(items(
        status("sent", message_id="wamid.1", at=T0, idempotency_key=key, flow="welcome"),
        status("failed", message_id="wamid.1", at=T0 + H, idempotency_key=key),
        status("sent", message_id="wamid.2", at=T0 + D, idempotency_key=key, flow="welcome"),
        sent("wamid.c", flow="cart", at=T0 + D + H)))
    await handle(items(inbound(at=T0 + D + 2 * H, context_message_id=named)))
    assert replied_by_flow(store) == {"welcome": 1}
