"""The month audit (issue 8, item 5a): a month of sending simulated through the real send gate, and an
independent auditor that checks every outcome against the rules.

Run it: ``.venv/bin/python -m tests.audit.month [--contacts 10000 --seed 8]`` — prints the counts
(messages, dispatched, deferred, suppressed by rule) and the violations (expected: 0); exit status 1
when there is any.

**The simulation** (`simulate`) runs on a virtual clock (a heap of instants, deterministic for a seed)
over ``START .. END`` = 2026-03-07 12:00 UTC .. 2026-04-07 12:00 UTC: the US/Cuba/Newfoundland
spring-forward (03-08), Lebanon's (03-28, at local midnight), Europe's and the Azores' (03-29), Troll's
two-hour jump, and the southern fall-back of Chile, Australia (Lord Howe: 30 minutes), New Zealand and
Chatham (04-04/05) all happen inside it. Contacts spread over the ``ZONES`` (39 IANA zones, half-hour and
quarter-hour offsets included) and four tenants with different gate policies (quiet hours 08–22, 09–20:30,
07:30–23:00 and one crossing midnight; caps 3/7 d, 2/7 d, 5/14 d; fatigue thresholds). Contacts state
limits (per week, per month, passive, preferred hours), opt out and back in (each STOP/START is an
inbound message answered with a free-form confirmation), write (opening 24 h windows; a free-form
service reply follows some of them, sometimes too late), get their number marked invalid (R-S7) or hit
Meta's per-user marketing limit (131049). Messages: broadcasts at one UTC instant for a whole audience
(some with an expiry, a few free-form), welcomes (expiring 15 min after their event, R-T1.1), cart
reminders (R-T6.3 fatigue, 24 h expiry), unread reminders (R-T4.5 fatigue, with replies whose delays
feed the formula), birthdays at 05:00 local (``quiet_hours_exempt``: the exempt flow), utility messages
and authentication codes (10 min expiry). They are driven the way the sender drives them: a due
message is gated; ``Dispatch`` → sent now (history updated; delivered/read/replies follow later);
``Defer`` → gated again at ``until``; ``Suppress`` → dropped (a fatigue suppression over the threshold
starts the pause `fatigue_pause` names). Everything observable goes to a `MonthLog` of plain data.

**The auditor** (`audit`) reads only that log. It imports nothing from ``sender`` (the simulation imports
the gate inside `simulate`; a test holds this) and re-derives every rule with its own code — local time
with ``zoneinfo`` on a minute grid, rolling-window counts in per-contact deques, its own window, expiry,
opt-out, block, invalid-number and fatigue bookkeeping. It checks every dispatch (marketing never in the
contact's local quiet hours, and inside their preferred hours where those overlap the allowed ones;
never to an opted-out contact; never over the policy's cap, the contact's weekly/monthly limit or
"passive" 1 per 30 days; never during a 131049 block or a fatigue pause or over a fatigue threshold;
free-form only within 24 h after an inbound message; never at or after the expiry; never before it was
due; utility/authentication/service never held by a marketing rule), that every deferral is to a later
instant for a reason that holds (a sample is checked to be the *first* allowed instant), and that every
suppression names a rule that really applied (no over-suppression either).
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
import time as _time
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

START = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)
END = datetime(2026, 4, 7, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
WEEK = timedelta(days=7)

ZONES: tuple[str, ...] = (
    "Europe/Berlin", "Europe/London", "Europe/Lisbon", "Atlantic/Azores", "Europe/Istanbul", "Europe/Moscow",
    "America/New_York", "America/Chicago", "America/Denver", "America/Phoenix", "America/Los_Angeles",
    "America/Anchorage", "Pacific/Honolulu", "America/Havana", "America/Mexico_City", "America/St_Johns",
    "America/Santiago", "America/Sao_Paulo", "America/Argentina/Buenos_Aires", "America/Asuncion",
    "Australia/Sydney", "Australia/Lord_Howe", "Australia/Adelaide", "Australia/Brisbane", "Pacific/Auckland",
    "Pacific/Chatham", "Asia/Kolkata", "Asia/Kathmandu", "Asia/Tehran", "Asia/Tokyo", "Asia/Shanghai",
    "Asia/Dubai", "Asia/Beirut", "Africa/Cairo", "Africa/Lagos", "Africa/Johannesburg", "Pacific/Kiritimati",
    "Pacific/Pago_Pago", "Antarctica/Troll",
)

# Rule IDs as the contract settles them (plain strings: the auditor shares no code with the gate).
EXPIRED, INVALID, WINDOW, OPT_OUT, META, CART, REMINDER, CAP, QUIET = (
    "EXPIRED", "R-S7", "WINDOW", "R-S6", "META-131049", "R-T6.3", "R-T4.5", "R-S5", "R-S4")
NOT_MARKETING_RULES = frozenset({EXPIRED, INVALID, WINDOW})


# --------------------------------------------------------------------------------------------------
# The log: plain data, what the simulation saw and did, the only thing the auditor reads.
# --------------------------------------------------------------------------------------------------

Hours = tuple[int, int]
"""A local wall-clock window as minutes of the day ``[start, end)``; ``end`` 1440 is midnight, an end
before the start crosses midnight."""


@dataclass(frozen=True, slots=True)
class Tenant:
    """A tenant's gate settings: quiet hours (allowed local window), cap (limit, days), fatigue thresholds."""

    name: str
    quiet: Hours
    cap: tuple[int, int]
    cart_threshold: float
    reminder_threshold: float


TENANTS: tuple[Tenant, ...] = (
    Tenant("alpha", (8 * 60, 22 * 60), (3, 7), 1.8, 1.5),
    Tenant("beta", (9 * 60, 20 * 60 + 30), (2, 7), 1.0, 1.5),
    Tenant("gamma", (7 * 60 + 30, 23 * 60), (5, 14), 1.8, 1.2),
    Tenant("delta", (10 * 60, 30), (3, 7), 1.8, 1.5),  # allowed 10:00–00:30: crosses midnight
)


PREFERRED: tuple[Hours, ...] = (
    (18 * 60, 21 * 60), (6 * 60, 9 * 60), (6 * 60, 7 * 60 + 30), (21 * 60, 24 * 60), (12 * 60, 13 * 60),
    (9 * 60, 17 * 60), (0, 6 * 60), (20 * 60, 60), (23 * 60, 7 * 60),
)
"""Stated preferred hours: overlapping the allowed ones, narrowing them, outside them, crossing midnight."""


@dataclass(frozen=True, slots=True)
class Person:
    """One contact: tenant, IANA zone, stated preferences (R-G4)."""

    id: int
    tenant: str
    zone: str
    max_week: int | None = None
    max_month: int | None = None
    preferred: Hours | None = None
    passive: bool = False


@dataclass(frozen=True, slots=True)
class Message:
    """One queued message: ``due`` when first gated, ``expires_at`` (None: never), its gate policy as plain
    data — ``quiet`` None is the exempt flow (birthday), ``cap`` (limit, days), ``fatigue`` (rule,
    threshold, pause days) or None."""

    id: int
    contact: int
    flow: str
    category: str
    free_form: bool
    due: datetime
    expires_at: datetime | None
    quiet: Hours | None
    cap: tuple[int, int]
    fatigue: tuple[str, float, int] | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """One thing that happened at ``at`` (aware UTC).

    Facts about a contact: ``opt_out``, ``resume``, ``inbound`` (``ref``: the message it answers or -1),
    ``invalid`` / ``block`` (until ``until``), ``delivered`` / ``read`` (of message ``msg``).
    Gate outcomes for message ``msg``: ``dispatch``, ``defer`` (``until``, ``rule``), ``suppress``
    (``rule``, ``reason``).
    """

    kind: str
    at: datetime
    contact: int
    msg: int = -1
    until: datetime | None = None
    rule: str = ""
    reason: str = ""
    ref: int = -1


@dataclass(frozen=True, slots=True)
class MonthLog:
    """Everything the auditor may read."""

    start: datetime
    end: datetime
    people: tuple[Person, ...]
    messages: tuple[Message, ...]
    entries: tuple[Entry, ...]
    gate_calls: int = 0


# --------------------------------------------------------------------------------------------------
# The simulation: drives the real gate.
# --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Reach:
    """The simulation's reachability record of one contact (what the sender would keep)."""

    opted_out: bool = False
    last_inbound: datetime | None = None
    blocked_until: datetime | None = None
    invalid_until: datetime | None = None
    paused: dict[str, datetime] = field(default_factory=dict)
    marketing: deque[datetime] = field(default_factory=deque)
    kinds: dict[str, deque[datetime]] = field(default_factory=lambda: defaultdict(deque))
    delays: dict[str, list[timedelta]] = field(default_factory=lambda: defaultdict(list))
    delivered: int = 0
    read: int = 0


def _instant(rng: random.Random, start: datetime = START, end: datetime = END) -> datetime:
    return start + timedelta(seconds=rng.randrange(int((end - start).total_seconds())))


def _arrivals(rng: random.Random, per_week: float) -> list[datetime]:
    """A Poisson process over the month, whole seconds."""
    out: list[datetime] = []
    at = START
    while True:
        at += timedelta(seconds=int(rng.expovariate(per_week / WEEK.total_seconds())) + 1)
        if at >= END:
            return out
        out.append(at)


def _crosses_midnight(h: Hours) -> bool:
    return h[1] % 1440 != 0 and h[1] < h[0]


def _people(n: int, rng: random.Random) -> list[Person]:
    people = []
    for i in range(n):
        draw = rng.random
        tenant = TENANTS[i % len(TENANTS)]
        zone = ZONES[rng.randrange(len(ZONES))]
        week = rng.randrange(0, 4) if draw() < 0.10 else None
        month = rng.randrange(0, 7) if draw() < 0.06 else None
        preferred = PREFERRED[rng.randrange(len(PREFERRED))] if draw() < 0.15 else None
        passive = draw() < 0.05
        people.append(Person(i, tenant.name, zone, week, month, preferred, passive))
    return people


def simulate(contacts: int = 10_000, seed: int = 8) -> MonthLog:
    """Run the month through ``sender.domain.gate.decide.gate`` and return its log (see the module docstring).

    Deterministic for (``contacts``, ``seed``). Messages still deferred past ``END`` stay pending.
    The contacts include preferred hours crossing midnight (also against a tenant whose allowed hours
    cross it) and "passive" contacts with an own monthly limit of 0 — the two gaps this audit found in
    the gate and that are fixed.
    """
    # The gate is imported here, not at module level: the auditor below must work without it.
    from scrm_common.contracts.commands import Fatigue, FrequencyCap, GatePolicy, QuietHours
    from sender.domain.gate.decide import ContactState, Dispatch, GateMessage, History, fatigue_pause, gate
    from sender.domain.gate.verdicts import Defer

    rng = random.Random(seed)
    people = _people(contacts, rng)
    tenants = {t.name: t for t in TENANTS}
    zones = {key: ZoneInfo(key) for key in ZONES}
    messages: list[Message] = []
    entries: list[Entry] = []
    heap: list[tuple[datetime, int, str, int, object]] = []
    seq = 0

    def push(at: datetime, kind: str, a: int, b: object = None) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(heap, (at, seq, kind, a, b))

    def hours(h: Hours | None) -> time | None:
        return None if h is None else time(h // 60, h % 60)

    def new(contact: int, flow: str, category: str, due: datetime, expires_at: datetime | None = None,
            free_form: bool = False, exempt: bool = False, fatigue: str | None = None) -> None:
        tenant = tenants[people[contact].tenant]
        tired = None
        if fatigue is not None:
            tired = (fatigue, tenant.cart_threshold if fatigue == CART else tenant.reminder_threshold, 7)
        messages.append(Message(len(messages), contact, flow, category, free_form, due, expires_at,
                                None if exempt else tenant.quiet, tenant.cap, tired))
        push(due, "due", len(messages) - 1)

    for person in people:  # what each contact will do and be sent, independent of the gate
        c = person.id
        for at in _arrivals(rng, 1.0):
            push(at, "inbound", c, -1)
        for at in _arrivals(rng, 1.5):
            new(c, "order", "utility", at, at + timedelta(hours=2) if rng.random() < 0.1 else None)
        for at in _arrivals(rng, 0.3):
            new(c, "otp", "authentication", at, at + timedelta(minutes=10))
        if rng.random() < 0.4:
            for at in _arrivals(rng, 1.5):
                new(c, "cart", "marketing", at, at + DAY, fatigue=CART)
        if rng.random() < 0.3:
            for at in _arrivals(rng, 1.5):
                new(c, "reminder", "marketing", at, fatigue=REMINDER)
        if rng.random() < 0.15:
            at = _instant(rng)
            new(c, "welcome", "marketing", at, at + timedelta(minutes=15))
        if rng.random() < 1 / 12:
            day = (START + timedelta(days=rng.randrange(1, 30))).astimezone(zones[person.zone]).date()
            local = datetime.combine(day, time(5, 0), tzinfo=zones[person.zone])
            midnight = datetime.combine(day + DAY, time(0, 0), tzinfo=zones[person.zone])
            new(c, "birthday", "marketing", local.astimezone(UTC), midnight.astimezone(UTC), exempt=True)
        if rng.random() < 0.06:
            at = _instant(rng)
            push(at, "opt_out", c)
            if rng.random() < 0.5:
                push(at + timedelta(seconds=rng.randrange(3600, 10 * 86400)), "resume", c)
        if rng.random() < 0.005:
            at = _instant(rng)
            push(at, "invalid", c, at + timedelta(seconds=rng.randrange(86400, 5 * 86400)))
        if rng.random() < 0.01:
            at = _instant(rng)
            push(at, "block", c, at + DAY)
    by_tenant: dict[str, list[int]] = defaultdict(list)
    for person in people:
        by_tenant[person.tenant].append(person.id)
    for tenant in TENANTS:  # broadcasts: one UTC instant for a whole audience, whatever their local time
        for _ in range(9):
            at = _instant(rng)
            expiry = rng.choice((None, timedelta(hours=6), timedelta(days=3)))
            for c in by_tenant[tenant.name]:
                if rng.random() < 0.6:
                    new(c, "broadcast", "marketing", at, None if expiry is None else at + expiry,
                        free_form=rng.random() < 0.05)

    reach = [_Reach() for _ in people]
    dispatched_at: dict[int, datetime] = {}
    deferrals: Counter[int] = Counter()
    policies: dict[tuple[Hours | None, tuple[int, int], tuple[str, float, int] | None], GatePolicy] = {}
    gate_calls = 0

    def policy(m: Message) -> GatePolicy:
        key = (m.quiet, m.cap, m.fatigue)
        if key not in policies:
            policies[key] = GatePolicy(
                quiet_hours=QuietHours() if m.quiet is None else QuietHours(start=hours(m.quiet[0]),
                                                                            end=hours(m.quiet[1] % 1440)),
                quiet_hours_exempt=m.quiet is None,
                frequency_cap=FrequencyCap(limit=m.cap[0], window_days=m.cap[1]),
                fatigue=None if m.fatigue is None else Fatigue(rule=m.fatigue[0], threshold=m.fatigue[1],  # type: ignore[arg-type]
                                                               pause_days=m.fatigue[2]))
        return policies[key]

    def inbound(at: datetime, c: int, ref: int) -> None:
        st = reach[c]
        st.last_inbound = at
        entries.append(Entry("inbound", at, c, ref=ref))
        if ref >= 0 and messages[ref].fatigue is not None and ref in dispatched_at:
            st.delays[messages[ref].fatigue[0]].append(at - dispatched_at[ref])  # type: ignore[index]

    while heap and heap[0][0] < END:
        at, _, kind, a, b = heapq.heappop(heap)
        if kind == "due":
            m = messages[a]
            person, st = people[m.contact], reach[m.contact]
            while st.marketing and st.marketing[0] <= at - timedelta(days=31):
                st.marketing.popleft()
            rule = m.fatigue[0] if m.fatigue is not None else ""
            if rule:
                kinds = st.kinds[rule]
                while kinds and kinds[0] <= at - timedelta(days=31):
                    kinds.popleft()
            state = ContactState(
                zone=zones[person.zone], opted_out=st.opted_out, last_inbound_at=st.last_inbound,
                max_per_week=person.max_week, max_per_month=person.max_month,
                preferred_hours=None if person.preferred is None else (hours(person.preferred[0]),
                                                                       hours(person.preferred[1] % 1440)),
                passive=person.passive, blocked_until=st.blocked_until, invalid_until=st.invalid_until,
                paused_until=st.paused)
            history = History(marketing_at=tuple(st.marketing), kind_at=tuple(st.kinds[rule]) if rule else (),
                              delivered=st.delivered, read=st.read,
                              reply_delays=tuple(st.delays[rule]) if rule else ())
            message = GateMessage(m.flow, m.category, m.free_form, m.expires_at, policy(m))  # type: ignore[arg-type]
            verdict = gate(message, state, history, at)
            gate_calls += 1
            if isinstance(verdict, Dispatch):
                entries.append(Entry("dispatch", at, m.contact, m.id))
                dispatched_at[m.id] = at
                if m.category == "marketing":
                    st.marketing.append(at)
                    if rng.random() < 0.005:  # Meta answers 131049: no marketing to them for 24 h
                        push(at + timedelta(seconds=5), "block", m.contact, at + timedelta(seconds=5) + DAY)
                if rule:
                    st.kinds[rule].append(at)
                if rng.random() < 0.95:
                    delivered = at + timedelta(seconds=rng.randrange(1, 120))
                    push(delivered, "delivered", m.contact, m.id)
                    if rng.random() < 0.6:
                        push(delivered + timedelta(seconds=int(rng.expovariate(1 / 21600)) + 1), "read", m.contact,
                             m.id)
                if rule == REMINDER and rng.random() < 0.35:
                    push(at + timedelta(seconds=int(rng.expovariate(1 / 50000)) + 1), "inbound", m.contact, m.id)
            elif isinstance(verdict, Defer):
                entries.append(Entry("defer", at, m.contact, m.id, until=verdict.until, rule=verdict.rule))
                deferrals[m.id] += 1
                if verdict.until > at and deferrals[m.id] < 50:  # else: the auditor reports it
                    push(verdict.until, "due", m.id)
            else:
                entries.append(Entry("suppress", at, m.contact, m.id, rule=verdict.rule, reason=verdict.reason))
                pause = fatigue_pause(message, verdict, at)
                if pause is not None:
                    st.paused[verdict.rule] = pause
        elif kind == "inbound":
            inbound(at, a, b)  # type: ignore[arg-type]
            if rng.random() < 0.6:  # a free-form service reply, sometimes after the window closed
                new(a, "service", "service", at + timedelta(seconds=rng.randrange(60, 30 * 3600)), free_form=True)
        elif kind in ("opt_out", "resume"):
            inbound(at, a, -1)  # the STOP / START message itself opens the window for the confirmation
            reach[a].opted_out = kind == "opt_out"
            entries.append(Entry(kind, at, a))
            new(a, "confirmation", "service", at + timedelta(seconds=2), free_form=True)
        elif kind == "invalid":
            reach[a].invalid_until = b  # type: ignore[assignment]
            entries.append(Entry("invalid", at, a, until=b))  # type: ignore[arg-type]
        elif kind == "block":
            reach[a].blocked_until = b  # type: ignore[assignment]
            entries.append(Entry("block", at, a, until=b))  # type: ignore[arg-type]
        elif kind == "delivered":
            reach[a].delivered += 1
            entries.append(Entry("delivered", at, a, b))  # type: ignore[arg-type]
        elif kind == "read":
            reach[a].read += 1
            entries.append(Entry("read", at, a, b))  # type: ignore[arg-type]
    return MonthLog(START, END, tuple(people), tuple(messages), tuple(entries), gate_calls)


# --------------------------------------------------------------------------------------------------
# The auditor: its own code only (no import from sender), reading the log.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Violation:
    """One outcome the rules forbid: the message, which check failed, and the facts."""

    msg: int
    check: str
    detail: str


@dataclass(slots=True)
class AuditReport:
    """The auditor's counts and findings."""

    contacts: int = 0
    zones: int = 0
    messages: int = 0
    by_category: Counter[str] = field(default_factory=Counter)
    gate_calls: int = 0
    dispatched: int = 0
    dispatched_marketing: int = 0
    deferrals: int = 0
    messages_deferred: int = 0
    deferred_by_rule: Counter[str] = field(default_factory=Counter)
    suppressed_by_rule: Counter[str] = field(default_factory=Counter)
    pending: int = 0
    deferral_targets_scanned: int = 0
    dst_forward: list[str] = field(default_factory=list)
    dst_back: list[str] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)

    @property
    def suppressed(self) -> int:
        """All suppressions, every rule."""
        return sum(self.suppressed_by_rule.values())


@cache
def _zone(key: str) -> ZoneInfo:
    return ZoneInfo(key)


def _window_minutes(h: Hours) -> frozenset[int]:
    start, end = h[0], h[1] % 1440 or 1440
    if start < end:
        return frozenset(range(start, end))
    return frozenset(range(start, 1440)) | frozenset(range(0, end))


@cache
def _allowed_minutes(quiet: Hours, preferred: Hours | None) -> frozenset[int]:
    """The local minutes of the day at which marketing may go: the allowed window, narrowed to the contact's
    preferred hours wherever the two overlap (when they do not overlap at all, the allowed window)."""
    allowed = _window_minutes(quiet)
    if preferred is None:
        return allowed
    both = allowed & _window_minutes(preferred)
    return both or allowed


def _local_minute(at: datetime, zone: str) -> int:
    local = at.astimezone(_zone(zone))
    return local.hour * 60 + local.minute


def _fmt(at: datetime, zone: str) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ} ({at.astimezone(_zone(zone)):%Y-%m-%d %H:%M %Z} {zone})"


@dataclass(frozen=True, slots=True)
class _Where:
    """An instant and a zone, formatted by `_fmt` only when a violation is written."""

    at: datetime
    zone: str

    def __str__(self) -> str:
        return _fmt(self.at, self.zone)


def _minute_steps(start: datetime, stop: datetime) -> Iterable[datetime]:
    """``start``, then every whole UTC minute after it, before ``stop`` (local minute boundaries coincide
    with UTC ones: every zone's offset is a whole number of minutes)."""
    if start < stop:
        yield start
    at = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while at < stop:
        yield at
        at += timedelta(minutes=1)


@dataclass(slots=True)
class _Seen:
    """The auditor's own record of one contact, rebuilt from the log's facts."""

    opted_out: bool = False
    last_inbound: datetime | None = None
    invalid_until: datetime | None = None
    blocked_until: datetime | None = None
    marketing: deque[datetime] = field(default_factory=deque)
    kinds: dict[str, deque[datetime]] = field(default_factory=lambda: defaultdict(deque))
    delays: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    paused: dict[str, datetime] = field(default_factory=dict)
    delivered: int = 0
    read: int = 0


def _count_since(instants: Iterable[datetime], since: datetime) -> int:
    return sum(1 for t in instants if t > since)


def _fatigue_score(rule: str, seen: _Seen, at: datetime) -> float:
    recent = sum(1 for t in seen.kinds[rule] if at - WEEK < t <= at)
    if rule == REMINDER:
        delays = seen.delays[rule]
        return 0.7 * recent + 0.3 * (sum(delays) / len(delays) if delays else 0.0)
    rate = seen.read / seen.delivered if seen.delivered else 0.0
    return 0.6 * recent - 0.4 * rate


def _caps_reached(m: Message, person: Person, seen: _Seen, at: datetime) -> list[str]:
    """Which marketing limits one more message at ``at`` would exceed (counting (at - window, at])."""
    out = []
    limit, days = m.cap
    if (n := _count_since(seen.marketing, at - timedelta(days=days))) >= limit:
        out.append(f"{n} in {days} d, cap {limit}")
    if person.max_week is not None and (n := _count_since(seen.marketing, at - WEEK)) >= person.max_week:
        out.append(f"{n} in 7 d, own weekly limit {person.max_week}")
    month = _count_since(seen.marketing, at - timedelta(days=30))
    if person.max_month is not None and month >= person.max_month:
        out.append(f"{month} in 30 d, own monthly limit {person.max_month}")
    if person.passive and month >= 1:
        out.append(f"{month} in 30 d, passive: 1 a month")
    return out


def _may_go_at(m: Message, person: Person, seen: _Seen, at: datetime) -> bool:
    """Whether time alone lets marketing ``m`` go at ``at``: not blocked by 131049, inside the hours."""
    if seen.blocked_until is not None and seen.blocked_until > at:
        return False
    return m.quiet is None or _local_minute(at, person.zone) in _allowed_minutes(m.quiet, person.preferred)


def _dst_changes(zones: Iterable[str], start: datetime, end: datetime) -> tuple[list[str], list[str]]:
    """The zones whose UTC offset rises (spring forward) / falls (fall back) between ``start`` and ``end``."""
    forward, back = [], []
    for key in sorted(set(zones)):
        before, after = start.astimezone(_zone(key)).utcoffset(), end.astimezone(_zone(key)).utcoffset()
        if before is not None and after is not None and after > before:
            forward.append(key)
        elif before is not None and after is not None and after < before:
            back.append(key)
    return forward, back


def audit(log: MonthLog, *, scan_every: int = 20) -> AuditReport:
    """Check every outcome in ``log`` against the rules (module docstring); return counts and violations.

    Entries are taken in time order (a stable sort: a tampered log may be out of order). Every
    ``scan_every``-th R-S4 deferral is also scanned minute by minute to be the *first* allowed instant.
    """
    report = AuditReport(contacts=len(log.people), zones=len({p.zone for p in log.people}),
                         messages=len(log.messages), gate_calls=log.gate_calls)
    report.by_category.update(m.category for m in log.messages)
    report.dst_forward, report.dst_back = _dst_changes((p.zone for p in log.people), log.start, log.end)
    people, messages = log.people, log.messages
    seen = [_Seen() for _ in people]
    done: dict[int, str] = {}
    gated: set[int] = set()
    deferred: set[int] = set()
    dispatched_at: dict[int, datetime] = {}
    r4 = 0

    def flag(msg: int, check: str, detail: str) -> None:
        report.violations.append(Violation(msg, check, detail))

    for e in sorted(log.entries, key=lambda entry: entry.at):
        s = seen[e.contact]
        if e.kind in ("inbound", "opt_out", "resume", "invalid", "block", "delivered", "read"):
            if e.kind == "inbound":
                s.last_inbound = e.at
                if e.ref >= 0 and (tired := messages[e.ref].fatigue) is not None and e.ref in dispatched_at:
                    s.delays[tired[0]].append((e.at - dispatched_at[e.ref]) / DAY)
            elif e.kind in ("opt_out", "resume"):
                s.opted_out = e.kind == "opt_out"
            elif e.kind == "invalid":
                s.invalid_until = e.until
            elif e.kind == "block":
                s.blocked_until = e.until
            elif e.kind == "delivered":
                s.delivered += 1
            else:
                s.read += 1
            continue
        m, person, at = messages[e.msg], people[e.contact], e.at
        marketing = m.category == "marketing"
        gated.add(m.id)
        if m.contact != e.contact:
            flag(m.id, "contact", f"logged for contact {e.contact}, queued for {m.contact}")
        if m.id in done:
            flag(m.id, "after the end", f"{e.kind} at {_fmt(at, person.zone)} after it was {done[m.id]}")
            continue
        if at < m.due:
            flag(m.id, "early", f"{e.kind} at {_fmt(at, person.zone)} before it was due {_fmt(m.due, person.zone)}")
        while s.marketing and s.marketing[0] <= at - timedelta(days=max(31, m.cap[1] + 1)):
            s.marketing.popleft()

        if e.kind == "dispatch":
            done[m.id] = "dispatched"
            dispatched_at[m.id] = at
            report.dispatched += 1
            where = _Where(at, person.zone)
            if m.expires_at is not None and at >= m.expires_at:
                flag(m.id, EXPIRED, f"{m.flow} sent {where}, at or after its expiry {m.expires_at.isoformat()}")
            if s.invalid_until is not None and s.invalid_until > at:
                flag(m.id, INVALID, f"{m.flow} sent {where} to a number invalid until {s.invalid_until.isoformat()}")
            if m.free_form and (s.last_inbound is None or at - s.last_inbound >= DAY):
                flag(m.id, WINDOW, f"free-form {m.flow} sent {where}, last inbound {s.last_inbound}")
            if not marketing:
                if m.id in deferred or at != m.due:
                    flag(m.id, "held", f"{m.category} {m.flow} due {m.due.isoformat()} sent only {where}")
                continue
            report.dispatched_marketing += 1
            if s.opted_out:
                flag(m.id, OPT_OUT, f"{m.flow} sent {where} to an opted-out contact")
            if s.blocked_until is not None and s.blocked_until > at:
                flag(m.id, META, f"{m.flow} sent {where} inside a 131049 block until {s.blocked_until.isoformat()}")
            if m.quiet is not None and _local_minute(at, person.zone) not in _allowed_minutes(m.quiet, person.preferred):
                flag(m.id, QUIET, f"{m.flow} sent {where}: outside the allowed hours {m.quiet} "
                                  f"(preferred {person.preferred})")
            for over in _caps_reached(m, person, s, at):
                flag(m.id, CAP, f"{m.flow} sent {where} with {over}")
            if m.fatigue is not None:
                rule, threshold, _ = m.fatigue
                if (paused := s.paused.get(rule)) is not None and paused > at:
                    flag(m.id, rule, f"{m.flow} sent {where} during a fatigue pause until {paused.isoformat()}")
                if (score := _fatigue_score(rule, s, at)) > threshold + 1e-9:
                    flag(m.id, rule, f"{m.flow} sent {where} with fatigue score {score:.3f} > {threshold}")
                s.kinds[rule].append(at)
            s.marketing.append(at)

        elif e.kind == "defer":
            report.deferrals += 1
            deferred.add(m.id)
            report.deferred_by_rule[e.rule or "(none)"] += 1
            until = e.until
            if not e.rule:
                flag(m.id, "no rule", f"deferral at {_fmt(at, person.zone)} names no rule")
            if until is None or until <= at:
                flag(m.id, "not later", f"deferred at {_fmt(at, person.zone)} to {until}, not a later instant")
                continue
            if not marketing:
                flag(m.id, "held", f"{m.category} {m.flow} deferred by {e.rule} at {_fmt(at, person.zone)}")
            if m.expires_at is not None and until >= m.expires_at:
                flag(m.id, EXPIRED, f"deferred to {until.isoformat()}, at or after its expiry "
                                    f"{m.expires_at.isoformat()}: should have been suppressed")
            if e.rule == QUIET:
                allowed = None if m.quiet is None else _allowed_minutes(m.quiet, person.preferred)
                if allowed is None:
                    flag(m.id, QUIET, f"the exempt {m.flow} deferred for quiet hours at {_fmt(at, person.zone)}")
                elif _local_minute(at, person.zone) in allowed:
                    flag(m.id, QUIET, f"deferred for quiet hours at {_fmt(at, person.zone)}, an allowed time")
                elif _local_minute(until, person.zone) not in allowed:
                    flag(m.id, QUIET, f"deferred to {_fmt(until, person.zone)}, itself not an allowed time")
                elif until - at > timedelta(hours=26):
                    flag(m.id, QUIET, f"deferred from {_fmt(at, person.zone)} to {_fmt(until, person.zone)}")
                else:
                    r4 += 1
                    if r4 % scan_every == 0:
                        report.deferral_targets_scanned += 1
                        first = next((t for t in _minute_steps(at, until)
                                      if _local_minute(t, person.zone) in allowed), None)
                        if first is not None:
                            flag(m.id, QUIET, f"deferred from {_fmt(at, person.zone)} to {_fmt(until, person.zone)} "
                                              f"though {_fmt(first, person.zone)} was allowed")
            elif e.rule == META:
                if s.blocked_until is None or s.blocked_until <= at or until != s.blocked_until:
                    flag(m.id, META, f"deferred to {until.isoformat()} at {at.isoformat()}; "
                                     f"block until {s.blocked_until}")
            else:
                flag(m.id, "unknown deferral", f"deferred by {e.rule!r}")

        elif e.kind == "suppress":
            done[m.id] = f"suppressed ({e.rule})"
            report.suppressed_by_rule[e.rule or "(none)"] += 1
            where = _Where(at, person.zone)
            if not e.rule:
                flag(m.id, "no rule", f"suppressed at {where} without a rule ({e.reason!r})")
                continue
            if not marketing and e.rule not in NOT_MARKETING_RULES:
                flag(m.id, "held", f"{m.category} {m.flow} suppressed by {e.rule} at {where}")
                continue
            why = ""
            if e.rule == EXPIRED:
                if m.expires_at is None:
                    why = "it has no expiry"
                elif at < m.expires_at:
                    if not marketing:
                        why = f"before its expiry {m.expires_at.isoformat()}"
                    elif (could := next((t for t in _minute_steps(at, m.expires_at)
                                         if _may_go_at(m, person, s, t)), None)) is not None:
                        why = f"it could still go at {_fmt(could, person.zone)} before {m.expires_at.isoformat()}"
            elif e.rule == INVALID:
                if s.invalid_until is None or s.invalid_until <= at:
                    why = "the number is not marked invalid"
            elif e.rule == WINDOW:
                if not m.free_form:
                    why = "a template needs no window"
                elif s.last_inbound is not None and at - s.last_inbound < DAY:
                    why = f"the window is open (last inbound {s.last_inbound.isoformat()})"
            elif e.rule == OPT_OUT:
                if not s.opted_out:
                    why = "the contact is subscribed"
            elif e.rule == CAP:
                if not _caps_reached(m, person, s, at):
                    why = "under every cap"
            elif e.rule in (CART, REMINDER):
                if m.fatigue is None or m.fatigue[0] != e.rule:
                    why = "not a message of that kind"
                elif (paused := s.paused.get(e.rule)) is not None and paused > at:
                    pass
                elif (score := _fatigue_score(e.rule, s, at)) > m.fatigue[1] - 1e-9:
                    s.paused[e.rule] = at + timedelta(days=m.fatigue[2])
                else:
                    why = f"fatigue score {score:.3f} <= {m.fatigue[1]} and no pause"
            else:
                why = "unknown rule"
            if why:
                flag(m.id, e.rule, f"{m.flow} suppressed at {where} by {e.rule}, but {why} ({e.reason})")
        else:
            flag(m.id, "unknown entry", e.kind)

    report.messages_deferred = len(deferred)
    for m in log.messages:
        if m.id not in done:
            if m.due < log.end and m.id not in gated:
                flag(m.id, "never gated", f"{m.flow} due {m.due.isoformat()}")
            report.pending += 1
    return report


def format_report(report: AuditReport, elapsed: float | None = None) -> str:
    """The counts the acceptance asks for, one per line."""
    lines = [
        f"month audit {START:%Y-%m-%d %H:%M}Z .. {END:%Y-%m-%d %H:%M}Z"
        + (f" ({elapsed:.1f} s)" if elapsed is not None else ""),
        f"contacts:            {report.contacts} in {report.zones} zones "
        f"(DST forward in {len(report.dst_forward)}, back in {len(report.dst_back)})",
        f"messages:            {report.messages} ("
        + ", ".join(f"{k} {v}" for k, v in sorted(report.by_category.items())) + ")",
        f"gate calls:          {report.gate_calls}",
        f"dispatched:          {report.dispatched} (marketing {report.dispatched_marketing})",
        f"deferred:            {report.deferrals} deferrals of {report.messages_deferred} messages ("
        + ", ".join(f"{k} {v}" for k, v in sorted(report.deferred_by_rule.items())) + ")",
        f"suppressed:          {report.suppressed} ("
        + ", ".join(f"{k} {v}" for k, v in sorted(report.suppressed_by_rule.items())) + ")",
        f"pending at the end:  {report.pending} (deferred past the month)",
        f"deferrals scanned:   {report.deferral_targets_scanned} checked to be the first allowed instant",
        f"violations:          {len(report.violations)}",
    ]
    by_check = Counter(v.check for v in report.violations)
    lines += [f"  {check}: {n}" for check, n in sorted(by_check.items())]
    lines += [f"  e.g. message {v.msg} [{v.check}] {v.detail}" for v in _examples(report.violations)]
    return "\n".join(lines)


def _examples(violations: Sequence[Violation], per_check: int = 3) -> list[Violation]:
    shown: Counter[str] = Counter()
    out = []
    for v in violations:
        if shown[v.check] < per_check:
            shown[v.check] += 1
            out.append(v)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.audit.month [--contacts N] [--seed S]``: simulate, audit, print; 1 on any violation."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args(argv)
    began = _time.perf_counter()
    report = audit(simulate(args.contacts, args.seed))
    print(format_report(report, _time.perf_counter() - began))
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
