"""One row per message, first-seen time per status, and what each message contributes to the counts.

A message is keyed by its WhatsApp id (wamid) or, for a send that never reached the provider, by
its idempotency key. Each status keeps its earliest timestamp, so redelivered and reordered statuses
converge on the same row. Implications: read ⇒ delivered ⇒ sent — a status proves the ones before it
even when their own receipt is missing or late; an implied status counts on the day of the earliest
status that proves it.

Only what the platform sent is counted (issue 5): a message is the platform's once a status of it
carries the send's idempotency key (the sender's own outcome events always do; Meta echoes it as
`biz_opaque_callback_data`). Statuses of other wamids — a number shared with an agent app — are kept
apart, uncounted, until (if ever) the platform's own status claims the wamid.

Statuses are matched by their message, never by their recipient (which may be unknown: BSUID-only or
unreadable). Replies meet messages by the recipient's match key (`recipient_key`): an inbound that
names the message it answers (`context.id`: a quoted reply, a button press, a reaction) replies to
that message, whenever it was sent, when it is a message we know of sent to that person; any other
inbound replies to the latest message sent to that person within 24 h (R-R1). A context naming a
message the platform did not send (an agent app's, on a shared number) credits that message, which
counts for nobody: the customer answered someone else. A context naming a wamid we never saw falls
back to the latest-message rule.

One message, several attempts (R-S7): the sender retries a failed send once after 24 h under the SAME
idempotency key, and the provider gives the retry a NEW wamid. A message is therefore one row per
idempotency key (`ledger.Ledger` finds it by key or by any of its wamids), and its counts say what
became of the message, not of each attempt:

- sent, delivered, read: the earliest of any attempt (the first attempt was accepted, so the message
  counts as sent on that day; the retry's delivered/read receipts count as the message's own);
- failed: only when the *latest* attempt failed. A message that failed and then succeeded on its late
  retry is not in `failed` (its first failure is withdrawn, on the day it was counted, as soon as the
  retry's "sent" arrives); if the retry fails too, the message counts as failed once, on the day of
  the retry's failure. `failure_rate` thus reads "messages that did not get through", the honest
  figure for the tenant; a failed attempt that was retried is visible in the sender's metrics.
- attempted: once, on the day of the first attempt.

Attempts are ordered by when their first status happened. The retry waits 24 h after the failure was
reported, so the statuses of two attempts never interleave in time and the order is the same whatever
order the statuses arrive in. A status without a wamid is the sender's own refusal or provider
rejection before any wamid was given, which the sender reports only when it is final: it is always
the latest attempt.

The send gate (issue 8): `deferred` and `suppressed` statuses are the sender's, never an attempt at the
provider — they count neither as attempted nor as sent or failed, and leave the attempts alone. They
give the message its deferrals and gate outcome (`gate`), counted per flow and rule by `gate_contributions`.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple, TypeVar

from pydantic import BaseModel, ConfigDict

from reporting.domain.gate import (
    GATE_STATUSES,
    Deferrals,
    GateCell,
    GateOutcome,
    gate_cells,
    latest_outcome,
    merge_deferrals,
)
from scrm_common.contracts.events import MessageInbound, MessageStatus, PaymentSucceeded
from scrm_common.identity import match_key
from scrm_common.money import exact_amount


class Metric(StrEnum):
    """What the overview counts."""

    ATTEMPTED = "attempted"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    REPLIED = "replied"
    CLICKED = "clicked"
    FAILED = "failed"
    PURCHASED = "purchased"


K = TypeVar("K")

# (UTC day, flow or None, metric): one count of the overview.
Cell = tuple[date, str | None, Metric]
# (UTC day, flow or None, currency): revenue of the overview.
RevenueCell = tuple[date, str | None, str]


def utc_day(at: datetime) -> date:
    """The UTC day a timestamp falls on."""
    return at.astimezone(UTC).date()


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def recipient_key(phone: str | None, wa_id: str | None) -> str | None:
    """One person's WhatsApp identity as digits: the match key of the `wa_id`, else of the phone.

    CLOUD-API.md §1: WhatsApp may answer from another form of the number the shop stores (Mexico's
    `521…` for `+52…`, Brazil's 8-digit mobiles, Argentina's `549…`); both forms share one match key
    (`scrm_common.identity.match_key`). The `wa_id` is preferred because it is the exact identity
    WhatsApp uses — learned from the send response or the webhook — so a reply from that `wa_id`
    meets the message even where no country rule applies. None when neither is known.
    """
    if wa_id:
        return match_key(wa_id)
    if phone:
        return match_key(phone)
    return None


class StatusSeen(_Frozen):
    """A `message.status` event reduced to what the report needs; `phone`/`wa_id` None when unknown.

    `rule` and `deferred_until` (UTC) are a gate status's (`deferred`, `suppressed`), None otherwise.
    """

    key: str
    status: str
    at: datetime
    message_id: str | None = None
    idempotency_key: str | None = None
    flow: str | None = None
    account_id: str | None = None
    category: str | None = None
    phone: str | None = None
    wa_id: str | None = None
    rule: str | None = None
    deferred_until: datetime | None = None

    @property
    def from_platform(self) -> bool:
        """The status names a send of ours: it carries the send's idempotency key."""
        return self.idempotency_key is not None


_BY_KEY = "idempotency:"


def message_key(message_id: str | None, idempotency_key: str | None) -> str | None:
    """The key a new message row gets: the wamid, or the idempotency key of a send that never got one;
    None when neither is known. (A row keeps its key; `ledger.Ledger` finds it by any of its names.)"""
    if message_id:
        return message_id
    if idempotency_key:
        return f"{_BY_KEY}{idempotency_key}"
    return None


def status_seen(event: MessageStatus) -> StatusSeen | None:
    """The status fact of an event, or None when it names no message (neither wamid nor idempotency key).

    The recipient is optional: a status whose contact is None or names only a BSUID is applied by
    its message all the same.
    """
    d = event.data
    key = message_key(d.message_id, d.idempotency_key)
    if key is None:
        return None
    contact = event.contact
    return StatusSeen(key=key, status=d.status, at=event.occurred_at, message_id=d.message_id,
                      idempotency_key=d.idempotency_key, flow=d.flow, account_id=d.account_id,
                      category=d.category, phone=contact.phone if contact else None,
                      wa_id=contact.wa_id if contact else None, rule=d.rule, deferred_until=d.deferred_until)


class Reply(NamedTuple):
    """An inbound message as reply attribution sees it: when, and the wamid it answers (`context.id`)."""

    at: datetime
    context: str | None = None


class InboundSeen(_Frozen):
    """A customer's message of any type (text, image, reaction, button …): a possible reply.

    `context_message_id` is the wamid it answers (a quoted reply, a button press, a reaction), when known.
    """

    event_id: str
    recipient: str
    at: datetime
    phone: str | None = None
    wa_id: str | None = None
    context_message_id: str | None = None

    @property
    def reply(self) -> Reply:
        return Reply(self.at, self.context_message_id)


def inbound_seen(event: MessageInbound) -> InboundSeen | None:
    """The reply fact of an inbound message, whatever its type; None when its sender is unknown.

    A sender named only by a BSUID cannot be matched to a message's recipient and is left out.
    """
    c = event.contact
    recipient = recipient_key(c.phone, c.wa_id)
    if recipient is None:
        return None
    return InboundSeen(event_id=event.event_id, recipient=recipient, at=event.occurred_at, phone=c.phone,
                       wa_id=c.wa_id, context_message_id=event.data.context_message_id)


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


_NEVER = datetime.min.replace(tzinfo=UTC)


class Message(_Frozen):
    """A message as reported: who and which flow, its attempts, and when each status was first seen.

    `platform` is True once a status proved the platform sent it; only then does it count.
    `message_id` is the wamid of its first attempt; `attempt_id` / `attempt_at` name its latest attempt
    (its wamid, None when that attempt got none, and when it first had a status); `attempted_at` is
    the first status of any attempt. `sent_at`, `delivered_at`, `read_at` are the earliest of any
    attempt; `failed_at` is when the latest attempt failed (None unless it did). A message known only
    from gate statuses has no attempt (`attempt_at` None).

    The send gate (`reporting.domain.gate`): `deferrals` are the rules that deferred it, each with its
    first time; `gate_state` (deferred | suppressed), `gate_rule`, `gate_at` and `deferred_until` its
    gate outcome (`gate`), None when the gate never held it back.
    """

    key: str
    message_id: str | None = None
    idempotency_key: str | None = None
    flow: str | None = None
    account_id: str | None = None
    category: str | None = None
    phone: str | None = None
    wa_id: str | None = None
    platform: bool = False
    attempt_id: str | None = None
    attempt_at: datetime | None = None
    attempted_at: datetime | None = None
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    read_at: datetime | None = None
    failed_at: datetime | None = None
    replied_at: datetime | None = None
    deferrals: Deferrals = ()
    gate_state: str | None = None
    gate_rule: str | None = None
    gate_at: datetime | None = None
    deferred_until: datetime | None = None

    @property
    def gate(self) -> GateOutcome | None:
        """The latest gate status standing for the message (a suppression is final), None if none."""
        if self.gate_state is None or self.gate_rule is None or self.gate_at is None:
            return None
        return GateOutcome(self.gate_state, self.gate_rule, self.gate_at, self.deferred_until)

    @property
    def wamids(self) -> frozenset[str]:
        """The wamids this message is known by: its key (when a wamid), its first and its latest attempt."""
        names = {self.message_id, self.attempt_id}
        if not self.key.startswith(_BY_KEY):
            names.add(self.key)
        return frozenset(n for n in names if n)

    @property
    def recipient(self) -> str | None:
        """Who it went to, as replies name them (`recipient_key`)."""
        return recipient_key(self.phone, self.wa_id)

    @property
    def delivered_on(self) -> datetime | None:
        """Delivered, or implied delivered by a read receipt."""
        return _earliest(self.delivered_at, self.read_at)

    @property
    def sent_on(self) -> datetime | None:
        """Sent, or implied sent by a delivery or read receipt."""
        return _earliest(self.sent_at, self.delivered_on)

    @property
    def reply_from(self) -> datetime | None:
        """When the message last went out to the person, as replies are measured from; None if never sent.

        The latest attempt's first status when that attempt got a wamid (a late retry reaches the person
        a day after the first attempt failed), else the first time it was sent.
        """
        sent = self.sent_on
        if sent is None or self.attempt_id is None or self.attempt_at is None:
            return sent
        return max(sent, self.attempt_at)

    @property
    def attempted_on(self) -> datetime | None:
        """When the sender first tried it: the first status of any attempt."""
        return _earliest(self.attempted_at, _earliest(self.sent_on, self.failed_at))


_DETAILS = ("idempotency_key", "flow", "account_id", "category", "phone", "wa_id")


def _gate_fields(outcome: GateOutcome | None) -> dict[str, object]:
    if outcome is None:
        return {"gate_state": None, "gate_rule": None, "gate_at": None, "deferred_until": None}
    return {"gate_state": outcome.state, "gate_rule": outcome.rule, "gate_at": outcome.at,
            "deferred_until": outcome.until}


def first_status(seen: StatusSeen) -> Message:
    """A message known from one status alone: one attempt (the status's wamid, or none), or, for a gate
    status, no attempt and that gate outcome (a deferral also lists its rule)."""
    if seen.status in GATE_STATUSES:
        rule = seen.rule or ""
        outcome = GateOutcome(seen.status, rule, seen.at, seen.deferred_until if seen.status == "deferred" else None)
        return Message(key=seen.key, message_id=seen.message_id, **{n: getattr(seen, n) for n in _DETAILS},
                       platform=seen.from_platform, **_gate_fields(outcome),
                       deferrals=((rule, seen.at),) if seen.status == "deferred" else ())
    return Message(key=seen.key, message_id=seen.message_id, **{n: getattr(seen, n) for n in _DETAILS},
                   platform=seen.from_platform, attempt_id=seen.message_id, attempt_at=seen.at,
                   attempted_at=seen.at, **{f"{seen.status}_at": seen.at})


def _attempt_order(m: Message) -> tuple[bool, datetime, str]:
    """Later attempts sort last; an attempt without a wamid is final (see the module docstring)."""
    return m.attempt_id is None, m.attempt_at or _NEVER, m.attempt_id or ""


def _first_order(m: Message) -> tuple[datetime, bool, str]:
    return m.attempted_at or _NEVER, m.message_id is None, m.message_id or ""


def combine(a: Message, b: Message) -> Message:
    """What two partial views of one message say together; `a`'s key and (on a tie) details are kept.

    Earliest time per status across attempts; the first attempt's wamid; the latest attempt decides
    `failed_at`. Order-independent: combining the same statuses in any order and grouping gives the
    same message (given attempts whose statuses do not interleave in time).
    """
    changes: dict[str, object] = {n: getattr(a, n) if getattr(a, n) is not None else getattr(b, n)
                                  for n in _DETAILS}
    changes["platform"] = a.platform or b.platform
    first, other = (a, b) if _first_order(a) <= _first_order(b) else (b, a)
    changes["message_id"] = first.message_id or other.message_id
    if b.attempt_at is None:  # b knows no attempt (only gate statuses): a's attempts stand
        pass
    elif a.attempt_at is None:
        changes.update(attempt_id=b.attempt_id, attempt_at=b.attempt_at, failed_at=b.failed_at)
    elif a.attempt_id == b.attempt_id:
        changes.update(attempt_at=_earliest(a.attempt_at, b.attempt_at), failed_at=_earliest(a.failed_at, b.failed_at))
    else:
        latest = a if _attempt_order(a) > _attempt_order(b) else b
        changes.update(attempt_id=latest.attempt_id, attempt_at=latest.attempt_at, failed_at=latest.failed_at)
    for name in ("attempted_at", "sent_at", "delivered_at", "read_at", "replied_at"):
        changes[name] = _earliest(getattr(a, name), getattr(b, name))
    changes["deferrals"] = merge_deferrals(a.deferrals, b.deferrals)
    changes.update(_gate_fields(latest_outcome(a.gate, b.gate)))
    return a.model_copy(update=changes)


def observe(message: Message | None, seen: StatusSeen) -> Message:
    """The message after one status: the earliest time per status wins, the first known details stay,
    and a status of a later attempt (another wamid) makes that attempt the one whose failure counts."""
    single = first_status(seen)
    return single if message is None else combine(message, single)


def contributions(message: Message) -> dict[Cell, int]:
    """The counts one message adds to the overview: each status once, on its own UTC day.

    Failed only when its latest attempt failed (R-S7's late retry may still get it through).
    Nothing for a message the platform did not send (issue 5: a number shared with an agent app).
    """
    out: dict[Cell, int] = {}
    if not message.platform:
        return out
    for metric, at in ((Metric.ATTEMPTED, message.attempted_on), (Metric.SENT, message.sent_on),
                       (Metric.DELIVERED, message.delivered_on), (Metric.READ, message.read_at),
                       (Metric.FAILED, message.failed_at), (Metric.REPLIED, message.replied_at)):
        if at is not None:
            cell = (utc_day(at), message.flow, metric)
            out[cell] = out.get(cell, 0) + 1
    return out


def delta(before: Message | None, after: Message | None) -> dict[Cell, int]:
    """What to add to the stored counts when a message changes from `before` to `after` (may be < 0)."""
    out = dict(contributions(after)) if after is not None else {}
    if before is not None:
        for cell, n in contributions(before).items():
            out[cell] = out.get(cell, 0) - n
    return {cell: n for cell, n in out.items() if n}


def gate_contributions(message: Message) -> dict[GateCell, int]:
    """The counts one message adds to the gate report (`reporting.domain.gate.gate_cells`): per flow and
    rule, deferred / deferred then sent / deferred then suppressed / suppressed. Nothing for a message
    the platform did not send."""
    if not message.platform or (not message.deferrals and message.gate_state is None):
        return {}  # the common case, kept cheap: the gate never held the message back
    return gate_cells(message.flow, message.deferrals, message.gate, message.reply_from)


def gate_delta(before: Message | None, after: Message | None) -> dict[GateCell, int]:
    """What to add to the stored gate counts when a message changes from `before` to `after` (may be < 0)."""
    out = dict(gate_contributions(after)) if after is not None else {}
    if before is not None:
        for cell, n in gate_contributions(before).items():
            out[cell] = out.get(cell, 0) - n
    return {cell: n for cell, n in out.items() if n}


def add_into(total: dict[K, int], more: Mapping[K, int]) -> None:
    """Sum `more` into `total`, dropping cells that net to zero."""
    for cell, n in more.items():
        value = total.get(cell, 0) + n
        if value:
            total[cell] = value
        else:
            total.pop(cell, None)


def assign_replies(
    messages: Iterable[tuple[str, datetime]], inbounds: Iterable[datetime | Reply], window: timedelta,
    named: Mapping[str, str] | None = None,
) -> dict[str, datetime | None]:
    """Which of one recipient's messages (key, sent time) were replied to, and when.

    An inbound message (of any type) that names one of them (`Reply.context`, a wamid looked up in
    `named`: wamid → key) replies to that message, whenever it was sent — the customer said which
    message they answer. Any other inbound replies to the latest message sent to that person at or
    before it, when it comes within `window` of it. A message counts as replied once, at its earliest
    reply. Ties are broken by key and context, so the answer depends only on the sets, never on
    arrival order.
    """
    ordered = sorted(messages, key=lambda m: (m[1], m[0]))
    times = [sent for _, sent in ordered]
    replied: dict[str, datetime | None] = {key: None for key, _ in ordered}
    named = named or {}
    replies = [r if isinstance(r, Reply) else Reply(r) for r in inbounds]
    for at, context in sorted(replies, key=lambda r: (r.at, r.context or "")):
        key = named.get(context) if context else None
        if key is not None and key in replied:
            if replied[key] is None:
                replied[key] = at
            continue
        i = bisect_right(times, at)
        if i == 0:
            continue
        key, sent = ordered[i - 1]
        if at - sent <= window and replied[key] is None:
            replied[key] = at
    return replied


def replies_in(
    messages: Sequence[Message], inbounds: Iterable[datetime | Reply], affected_from: datetime,
    affected_to: datetime, window: timedelta,
) -> dict[str, datetime | None]:
    """Reply times of the messages sent within [affected_from, affected_to], from one recipient's history.

    `messages` and `inbounds` must hold everything of that recipient from `affected_from - window`
    to `affected_to + window`, every message an inbound among them names, and every inbound naming
    one of the messages; messages outside the affected span are left alone. An inbound names a
    message by any of its wamids (a late retry's or the first attempt's).
    """
    sent = {m.key: at for m in messages if (at := m.reply_from) is not None}
    named = {wamid: m.key for m in sorted(messages, key=lambda m: m.key) if m.key in sent for wamid in m.wamids}
    replies = assign_replies(sent.items(), inbounds, window, named)
    return {key: at for key, at in replies.items() if affected_from <= sent[key] <= affected_to}


class OrderPaid(_Frozen):
    """A distinct order of payment.succeeded; `amount` exact in the currency's minor units."""

    order_id: str
    amount: Decimal
    currency: str
    paid_at: datetime


def order_paid(event: PaymentSucceeded) -> OrderPaid:
    """The order of a payment, its amount an exact Decimal (KWD keeps 3 decimals, JPY none)."""
    d = event.data
    return OrderPaid(order_id=d.order_id, amount=exact_amount(d.amount, d.currency), currency=d.currency,
                     paid_at=event.occurred_at)


def order_cells(order: OrderPaid) -> tuple[Cell, RevenueCell]:
    """Where an order counts: purchased and revenue on its UTC day, not yet attributed to a flow."""
    day = utc_day(order.paid_at)
    return (day, None, Metric.PURCHASED), (day, None, order.currency)
