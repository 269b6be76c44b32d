"""A person's whole story (issue 8 item 4): the engine's decisions merged with the sender's send log, read
time, into ordered lines and one summary per decided message — did it reach them, and if not, which rule
stopped it.

The engine owns its decisions (`decisions` rows: send, suppressed, expired, scheduled, cancelled, withdrawn,
failed, dead_lettered …); the sender owns what became of each message it was handed (its send log, `GET
/v1/messages`: state, the gate's `rule`, `deferred_until`, the human `error_reason`, and the instants it was
queued, sent, delivered, read or suppressed). Nothing is copied between the two: this module merges them
when someone asks. Pure: no I/O, no clock — every instant comes from the inputs (aware UTC).

Rule IDs are the sender's gate rules, exactly as the contract settles them (`EXPIRED`, `R-S7`, `WINDOW`,
`R-S6`, `META-131049`, `R-T4.5`, `R-T6.3`, `R-S5`, `R-S4`, `WITHDRAWN`); the engine's own expiry (R-T1.1,
outcome `expired`) is told as `EXPIRED` too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

# The outcome of an engine decision that handed a message to the sender.
SENT_TO_SENDER = "send"
EXPIRED_RULE = "EXPIRED"
WITHDRAWN_RULE = "WITHDRAWN"

Source = Literal["trigger-engine", "sender"]
Status = Literal["reached", "pending", "stopped", "failed", "unknown"]

# Within one message, the order its steps happen in (ties of time keep this order).
_PHASE = {"scheduled": 0, "decided": 1, "suppressed": 5, "expired": 5, "cancelled": 5, "withdrawn": 3,
          "queued": 2, "deferred": 2, "sent": 4, "delivered": 6, "read": 7, "failed": 8, "dead_lettered": 9}
_LAST_PHASE = 10


@dataclass(frozen=True, slots=True)
class Decided:
    """One row of the engine's decision log for the person (as `GET …/decisions` lists it): `outcome` what
    was decided (`send` handed a message to the sender under `idempotency_key`), `reason` why (None for a
    plain send), `decided_at` when (aware UTC)."""

    event_id: str
    event_type: str
    flow: str
    outcome: str
    reason: str | None
    idempotency_key: str | None
    decided_at: datetime


@dataclass(frozen=True, slots=True)
class Logged:
    """The sender's record of one message (its send log), every field but the key optional: an older sender
    lacks the gate's fields, and what it did not say is None.

    `state`: queued | sending | sent | failed | suppressed (anything else is kept and read leniently);
    `rule`: the gate rule that last deferred (while queued) or suppressed it; `deferred_until`: the instant
    the last deferral named; `error_reason`: the human reason ("quiet hours 08:00–22:00 Europe/Berlin:
    deferred until 2026-12-02 08:00 CET (07:00Z)", "3 marketing messages in the last 7 days", a provider's
    failure); `held_by`: the account restriction a queued message waits for. Instants aware UTC."""

    idempotency_key: str
    state: str | None = None
    rule: str | None = None
    error_reason: str | None = None
    error_code: int | None = None
    held_by: str | None = None
    queued_at: datetime | None = None
    sent_at: datetime | None = None
    deferred_until: datetime | None = None
    expires_at: datetime | None = None
    suppressed_at: datetime | None = None
    delivered_at: datetime | None = None
    read_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Line:
    """One step of the story: at `at` (aware UTC), `step` happened to the message `idempotency_key` (None for
    a decision about no message, e.g. a dead-lettered event) of `flow`, as `source` records it.

    Steps: decided (the engine handed it to the sender), scheduled, suppressed, expired, cancelled, withdrawn
    (a withdrawal was decided), dead_lettered, … (the engine's outcomes, its `reason`); queued, deferred
    (`until` the instant, `rule` — also after the message was sent, not after a suppression overwrote it —
    and `reason` the sender's human text with the local time while the message still waits), sent,
    delivered, read, failed (`reason` with the error code), suppressed (`rule`, `reason`) from the sender's
    log."""

    at: datetime
    step: str
    flow: str
    idempotency_key: str | None
    source: Source
    rule: str | None = None
    reason: str | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Summary:
    """What became of one decided message.

    `status`: `reached` (sent to WhatsApp, or further: delivered, read), `pending` (decided and waiting:
    scheduled, queued, deferred `until`, or not in the send log yet), `stopped` (not sent, for good:
    `stopped_by` the rule ID when one stopped it — R-S5, R-S4, EXPIRED, WITHDRAWN … — and `reason`),
    `failed` (sending failed: `reason` with the error code), `unknown` (the send log could not be asked).
    `reached` is True/False for the first four and None when unknown; `pending` True only for `pending`.
    `state` is the sender's state when it was asked and knew the message; `last_step` the story's last step
    for the message."""

    idempotency_key: str
    flow: str
    decided_at: datetime
    status: Status
    reached: bool | None
    pending: bool
    stopped_by: str | None
    reason: str | None
    state: str | None
    last_step: str
    until: datetime | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Story:
    """The person's story: `lines` oldest first; `messages` one summary per decided message, in the order
    they were first decided (oldest first)."""

    lines: tuple[Line, ...]
    messages: tuple[Summary, ...]


def failure_text(reason: str | None, code: int | None) -> str:
    """A failure's reason with its error code: "template welcome (de) is paused", "… (error 131026)"."""
    text = (reason or "").strip() or "failed without a reason given"
    return f"{text} (error {code})" if code is not None and f"{code}" not in text else text


def story(decided: Sequence[Decided], logged: Mapping[str, Logged] | None) -> Story:
    """Merge the person's decisions (`decided` in the order they were recorded, oldest first: decisions of one
    instant keep that order) with the sender's records of their messages (`logged` by idempotency key; None
    when the send log could not be asked) into ordered lines and per-message summaries.

    Ordering: each message's own steps in the order they happen (decided → deferred → sent → delivered →
    read, or → suppressed), each step no earlier than the one before it (services' clocks may disagree by
    a little); lines of different messages by time. A key decided only as a timer (`scheduled`) that the same
    event and flow later decided under another key (the timer fired) gets no summary of its own: the fired
    message's summary tells it. Never raises on missing or unknown fields."""
    rows = sorted(decided, key=lambda d: d.decided_at)
    by_key: dict[str, list[Decided]] = {}
    keyless: list[Decided] = []
    for row in rows:
        if row.idempotency_key:
            by_key.setdefault(row.idempotency_key, []).append(row)
        else:
            keyless.append(row)
    placed: list[tuple[datetime, datetime, int, int, Line]] = []
    summaries: list[Summary] = []
    for n, (key, own) in enumerate(by_key.items()):
        record = logged.get(key) if logged is not None else None
        lines = _message_lines(key, own, record)
        previous = lines[0].at
        for i, line in enumerate(lines):
            previous = max(previous, line.at)
            placed.append((previous, own[0].decided_at, n, i, line))
        if not _fired_timer(key, own, rows):
            summaries.append(_summary(key, own, record, logged is not None, lines[-1].step))
    for row in keyless:
        line = Line(at=row.decided_at, step=row.outcome, flow=row.flow, idempotency_key=None,
                    source="trigger-engine", reason=row.reason)
        placed.append((row.decided_at, row.decided_at, len(by_key), 0, line))
    placed.sort(key=lambda p: p[:4])
    return Story(lines=tuple(p[4] for p in placed), messages=tuple(summaries))


_RULE_IN_REASON = re.compile(r"^(R-[A-Z]+\d+(?:\.\d+)*)\b")


def reason_rule(reason: str | None) -> str | None:
    """The SPEC rule an engine reason starts with (`R-T6.2: 2 price-drop messages …` → `R-T6.2`), else None."""
    found = _RULE_IN_REASON.match(reason or "")
    return found.group(1) if found else None


def _engine_line(row: Decided) -> Line:
    step = "decided" if row.outcome == SENT_TO_SENDER else row.outcome
    rule = EXPIRED_RULE if row.outcome == "expired" else reason_rule(row.reason)
    return Line(at=row.decided_at, step=step, flow=row.flow, idempotency_key=row.idempotency_key,
                source="trigger-engine", rule=rule, reason=row.reason)


def _message_lines(key: str, own: Sequence[Decided], record: Logged | None) -> list[Line]:
    """The message's lines in the order they happened: the engine's, then the sender's after its decision."""
    lines = [_engine_line(r) for r in own]
    if record is not None:
        told_failed = any(r.outcome == "failed" for r in own)
        lines.extend(_sender_lines(key, own[0].flow, record, told_failed=told_failed))
    # the engine's lines are in time order; a sender step never precedes the message's decision
    ordered = sorted(lines, key=lambda line: (_phase_time(line, lines), _PHASE.get(line.step, _LAST_PHASE)))
    return _late_withdrawals(ordered)


def _late_withdrawals(lines: list[Line]) -> list[Line]:
    """A withdrawal told after the sender had already settled the message (sent it, or suppressed it by another
    rule: a payment can overtake the customer's STOP on its way to the engine) says that it changed nothing."""
    settled: Line | None = None
    out: list[Line] = []
    for line in lines:
        if line.source == "sender" and line.step in ("sent", "suppressed"):
            settled = settled or line
        elif line.step == "withdrawn" and settled is not None:
            done = f"suppressed ({settled.rule})" if settled.step == "suppressed" else "sent"
            line = replace(line, reason=f"{line.reason or 'withdrawn'}: no effect, the message was already {done}")
        out.append(line)
    return out


def _phase_time(line: Line, lines: Sequence[Line]) -> datetime:
    """A sender step sorts no earlier than the first engine line that handed the message over."""
    if line.source == "sender":
        handed = [x.at for x in lines if x.source == "trigger-engine" and x.step == "decided"]
        if handed:
            return max(line.at, min(handed))
    return line.at


def _sender_lines(key: str, flow: str, rec: Logged, *, told_failed: bool) -> Iterable[Line]:
    """The steps the sender's record tells, each at its own instant (a step without one is placed at the
    latest instant known before it)."""
    state = rec.state
    known = rec.queued_at
    suppressed = state == "suppressed" or (state is None and rec.suppressed_at is not None)
    if rec.queued_at is not None:
        yield Line(at=rec.queued_at, step="queued", flow=flow, idempotency_key=key, source="sender",
                   reason=rec.held_by if state in ("queued", "sending") else None)
    if rec.deferred_until is not None:
        rule, reason = _deferral(rec, suppressed=suppressed)
        later = [at for at in (rec.sent_at, rec.suppressed_at, rec.delivered_at, rec.read_at) if at is not None]
        at = known if known is not None else min(later, default=None)
        if at is not None:
            yield Line(at=at, step="deferred", flow=flow, idempotency_key=key, source="sender", rule=rule,
                       reason=reason, until=rec.deferred_until)
    for step, at in (("sent", rec.sent_at), ("delivered", rec.delivered_at), ("read", rec.read_at)):
        if at is not None:
            # Meta stamps delivered/read in whole seconds: a receipt never shows before the step it follows.
            known = at if known is None else max(known, at)
            yield Line(at=known, step=step, flow=flow, idempotency_key=key, source="sender")
    if suppressed:
        at = rec.suppressed_at or known
        if at is not None:
            yield Line(at=at, step="suppressed", flow=flow, idempotency_key=key, source="sender", rule=rec.rule,
                       reason=rec.error_reason)
    if state == "failed" and not told_failed and known is not None:
        yield Line(at=known, step="failed", flow=flow, idempotency_key=key, source="sender", rule=rec.rule,
                   reason=failure_text(rec.error_reason, rec.error_code))


def _deferral(rec: Logged, *, suppressed: bool) -> tuple[str | None, str | None]:
    """The rule and human reason of a record's last deferral (R-S4 quiet hours, R-S5 …), as far as the record
    still tells them.

    The sender keeps `rule` and `deferred_until` after the deferred message was sent (its `error_reason` is
    cleared then); a suppression overwrites `rule` and `error_reason` with its own, a failure `error_reason`.
    So the rule is the deferral's unless the message was suppressed; the reason only while it still waits
    (queued or sending)."""
    rule = None if suppressed else rec.rule
    reason = rec.error_reason if rec.state in ("queued", "sending") else None
    return rule, reason


def _fired_timer(key: str, own: Sequence[Decided], rows: Sequence[Decided]) -> bool:
    """True for a key decided only as `scheduled` whose event and flow were decided later (strictly: not by the
    same decision) under another key, other than as another timer — the timer fired as that decision."""
    if any(r.outcome != "scheduled" for r in own):
        return False
    first = own[0]
    return any(r.idempotency_key not in (None, key) and r.event_id == first.event_id and r.flow == first.flow
               and r.outcome != "scheduled" and r.decided_at > first.decided_at for r in rows)


def _made(first: Decided, key: str, last_step: str, status: Status, *, reason: str | None = None,
          stopped_by: str | None = None, state: str | None = None, until: datetime | None = None,
          expires_at: datetime | None = None) -> Summary:
    reached = {"reached": True, "unknown": None}.get(status, False)
    return Summary(idempotency_key=key, flow=first.flow, decided_at=first.decided_at, status=status,
                   reached=reached, pending=status == "pending", stopped_by=stopped_by, reason=reason, state=state,
                   last_step=last_step, until=until, expires_at=expires_at)


def _summary(key: str, own: Sequence[Decided], rec: Logged | None, asked: bool, last_step: str) -> Summary:
    first, last = own[0], own[-1]
    failed_rows = [r for r in own if r.outcome == "failed"]
    withdrawn = [r for r in own if r.outcome == "withdrawn"]
    if not any(r.outcome == SENT_TO_SENDER for r in own):
        # a key the engine never handed to the sender: its latest decision says what became of it
        if last.outcome == "scheduled":
            return _made(first, key, last_step, "pending", reason=last.reason)
        rule = {"expired": EXPIRED_RULE, "withdrawn": WITHDRAWN_RULE}.get(last.outcome) or reason_rule(last.reason)
        return _made(first, key, last_step, "stopped", stopped_by=rule, reason=last.reason or last.outcome)
    if rec is not None:
        return _from_log(first, key, last_step, rec, failed_rows)
    if failed_rows:
        return _made(first, key, last_step, "failed", reason=failed_rows[-1].reason)
    if not asked:
        return _made(first, key, last_step, "unknown", reason="the sender's send log could not be asked")
    if withdrawn:
        return _made(first, key, last_step, "stopped", stopped_by=WITHDRAWN_RULE, reason=withdrawn[-1].reason)
    return _made(first, key, last_step, "pending", reason="not in the sender's send log yet")


def _from_log(first: Decided, key: str, last_step: str, rec: Logged, failed_rows: Sequence[Decided]) -> Summary:
    """A message the sender knows: its record says what became of it (read leniently)."""
    state, expires = rec.state, rec.expires_at
    if state == "failed":
        told = rec.error_reason or rec.error_code is not None
        reason = failure_text(rec.error_reason, rec.error_code) if told or not failed_rows else failed_rows[-1].reason
        # a failure records no rule of its own: a rule next to a deferral's instant is the deferral's
        rule = rec.rule if rec.deferred_until is None else None
        return _made(first, key, last_step, "failed", stopped_by=rule, reason=reason, state=state,
                     expires_at=expires)
    if state == "suppressed" or (state is None and rec.suppressed_at is not None):
        return _made(first, key, last_step, "stopped", stopped_by=rec.rule, reason=rec.error_reason, state=state,
                     expires_at=expires)
    if state == "sent" or rec.sent_at is not None or rec.delivered_at is not None or rec.read_at is not None:
        return _made(first, key, last_step, "reached", state=state, expires_at=expires)
    if state in ("queued", "sending"):
        until = rec.deferred_until if rec.deferred_until is not None and rec.rule is not None else None
        return _made(first, key, last_step, "pending", reason=rec.error_reason or rec.held_by, state=state,
                     until=until, expires_at=expires)
    return _made(first, key, last_step, "unknown", reason=f"the send log names an unknown state: {state}",
                 state=state, expires_at=expires)
