"""What the sender's send gate did to a message, and what that adds to the counts per flow and rule.

Issue 8 item 4 (SPEC R-S4–R-S7, R-T4.5, R-T6.3, R-G4): the sender publishes `message.status` with status
`deferred` (not handed to the provider yet; `rule`, `deferred_until`) or `suppressed` (it will never go;
`rule`). Neither is an attempt at the provider: they never count as attempted, sent or failed.

A message keeps two gate facts, both order-independent (the same statuses in any order, any number of
times, give the same value):

- its **deferrals**: each rule that ever deferred it, with the first time it did (`merge_deferrals`);
- its **gate outcome**: the latest gate status (`latest_outcome`) — `suppressed` is final: once a message
  was suppressed its outcome stays that suppression (the earliest one), whatever later status arrives;
  `deferred` is not: a later deferral replaces it, and a message deferred and then sent goes
  deferred → sent → delivered → read (its delivery statuses are counted as usual).

Counts (`gate_cells`), each on the UTC day of the deferral or suppression that causes it, per flow and
rule, and once more under `ANY_RULE` (the flow's total, each message once):

- `deferred`: messages deferred at least once (by that rule);
- `deferred_then_sent`: of those, messages that went out to the provider at or after that deferral;
- `deferred_then_suppressed`: of those, messages suppressed at or after that deferral;
- `suppressed`: messages suppressed (under the rule that suppressed them).

A message deferred by two rules (R-S4 quiet hours, then META-131049) counts under each rule, and once
under `ANY_RULE`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import NamedTuple

DEFERRED = "deferred"
SUPPRESSED = "suppressed"
GATE_STATUSES: frozenset[str] = frozenset({DEFERRED, SUPPRESSED})

# The rule of a flow's total row: every message once, whichever rule(s) deferred or suppressed it.
ANY_RULE = ""


class GateMetric(StrEnum):
    """What the gate report counts per flow and rule."""

    DEFERRED = "deferred"
    DEFERRED_THEN_SENT = "deferred_then_sent"
    DEFERRED_THEN_SUPPRESSED = "deferred_then_suppressed"
    SUPPRESSED = "suppressed"


# (UTC day, flow or None, rule or ANY_RULE, metric): one count of the gate report.
GateCell = tuple[date, str | None, str, GateMetric]

# Rule → first time that rule deferred the message, sorted by rule.
Deferrals = tuple[tuple[str, datetime], ...]


class GateOutcome(NamedTuple):
    """One gate status of a message: `state` deferred or suppressed, the `rule`, when (`at`, UTC), and for a
    deferral the earliest instant it may go (`until`, UTC; None for a suppression)."""

    state: str
    rule: str
    at: datetime
    until: datetime | None = None


_NEVER = datetime.min.replace(tzinfo=UTC)


def latest_outcome(a: GateOutcome | None, b: GateOutcome | None) -> GateOutcome | None:
    """The gate outcome two partial views of one message agree on: any suppression over any deferral; of two
    suppressions the earliest (it is final); of two deferrals the latest (ties broken by rule).

    Commutative, associative and idempotent, so redelivered and reordered statuses converge.
    """
    if a is None:
        return b
    if b is None:
        return a
    if (a.state == SUPPRESSED) != (b.state == SUPPRESSED):
        return a if a.state == SUPPRESSED else b
    if a.state == SUPPRESSED:
        return min(a, b, key=lambda o: (o.at, o.rule))
    return max(a, b, key=lambda o: (o.at, o.until or _NEVER, o.rule))


def merge_deferrals(a: Deferrals, b: Deferrals) -> Deferrals:
    """Each rule once, at the earliest time it deferred the message; sorted by rule."""
    first: dict[str, datetime] = dict(a)
    for rule, at in b:
        if rule not in first or at < first[rule]:
            first[rule] = at
    return tuple(sorted(first.items()))


def _second(at: datetime) -> datetime:
    # Meta reports statuses to the whole second: a send in the second of the deferral counts as after it.
    return at.replace(microsecond=0)


def gate_cells(flow: str | None, deferrals: Iterable[tuple[str, datetime]], outcome: GateOutcome | None,
               went_out: datetime | None) -> dict[GateCell, int]:
    """The counts one message adds to the gate report (module docstring), +1 per cell.

    `went_out` is when the message last went out to the provider (`Message.reply_from`: the latest
    attempt's, so the R-S7 retry of an earlier send is judged by itself), None when it never did.
    """
    out: dict[GateCell, int] = {}

    def add(at: datetime, rule: str, metric: GateMetric) -> None:
        cell = (at.astimezone(UTC).date(), flow, rule, metric)
        out[cell] = out.get(cell, 0) + 1

    suppressed = outcome.at if outcome is not None and outcome.state == SUPPRESSED else None
    listed = sorted(deferrals, key=lambda d: (d[1], d[0]))
    for rule, at in listed + ([(ANY_RULE, listed[0][1])] if listed else []):
        add(at, rule, GateMetric.DEFERRED)
        if went_out is not None and went_out >= _second(at):
            add(at, rule, GateMetric.DEFERRED_THEN_SENT)
        if suppressed is not None and suppressed >= at:
            add(at, rule, GateMetric.DEFERRED_THEN_SUPPRESSED)
    if outcome is not None and suppressed is not None:
        add(suppressed, outcome.rule, GateMetric.SUPPRESSED)
        add(suppressed, ANY_RULE, GateMetric.SUPPRESSED)
    return out
