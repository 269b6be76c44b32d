"""The timer loop: fires due timers, each exactly once, with whatever replicas run it (issue 8 item 1).

Each pass is one transaction: claim up to `batch_size` due pending timers with their persons' locks
(`TimerRepository.claim_due`: rows `FOR UPDATE SKIP LOCKED`, person locks only if free right now — a person an
event batch holds is left for the next pass), load their persons' profiles and their tenants' configurations,
record an expired timer as expired (never fired late, SPEC R-T1.1), let the flow decide for the others
(`domain.decide.on_timer`), settle the timers and write the decisions with the event handler's
`DecisionWriter`, commit, wake the relay. A replica killed mid-pass rolls back: its timers stay pending and the
next pass (its own after a restart, or another replica's) fires them — once, because settling and the decisions
commit together.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common import runtime
from scrm_common.backoff import Backoff
from scrm_common.clock import Clock
from trigger_engine.adapters.db import EngineRepository
from trigger_engine.adapters.timers import ClaimedTimer, TimerRepository
from trigger_engine.domain import ContactProfile, Decision, EngineConfig, Suppress
from trigger_engine.domain.decide import on_timer
from trigger_engine.domain.decisions import Remember
from trigger_engine.handlers import TIMER_EVENT_TYPE, Cause, ConfigSource, DecisionWriter, EngineMetrics

log = logging.getLogger(__name__)

# How long a pass that left timers pending (their persons locked by an event batch) waits before the next try.
LOCKED_RETRY_SECONDS = 0.05
# Due-lag buckets (seconds from a timer's due time to its firing): a fresh timer fires within ~1 s; an outage
# shows up as minutes.
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class TimerMetrics:
    """`scrm_trigger_engine_timers_total{flow,outcome}` (outcome fired|expired), the due lag of fired timers
    (`scrm_trigger_engine_timer_lag_seconds`, seconds from due to fired) and the timers a pass left pending
    because their person was locked (`scrm_trigger_engine_timers_left_locked_total`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.timers = Counter("scrm_trigger_engine_timers_total", "Timers settled by the timer loop",
                              ["flow", "outcome"], registry=registry)
        self.lag = Histogram("scrm_trigger_engine_timer_lag_seconds", "From a timer's due time to its firing",
                             buckets=LAG_BUCKETS, registry=registry)
        self.left_locked = Counter("scrm_trigger_engine_timers_left_locked_total",
                                   "Due timers a pass left pending: their person was locked by an event batch",
                                   registry=registry)


@dataclass(frozen=True, slots=True)
class Pass:
    """What one pass did: timers `fired` and `expired`, and `left` pending (person locked elsewhere)."""

    fired: int = 0
    expired: int = 0
    left: int = 0

    @property
    def settled(self) -> int:
        """Timers the pass settled."""
        return self.fired + self.expired


class TimerLoop:
    """Fires due timers; `run(stop)` is one of the service's loops (like the sender's Dispatcher).

    `wake()` starts a pass now; `wake_at(due_at)` (the event handler's `on_scheduled`) starts one at `due_at`
    (aware UTC) or at the next poll, whichever is first. Idle, it polls every `poll_seconds`; it runs passes back
    to back while they find work. Paused while `runtime.INTAKE` is closed (a graceful stop's drain).
    """

    def __init__(self, *, engine: AsyncEngine, repository: EngineRepository, timers: TimerRepository,
                 configs: ConfigSource, clock: Clock, metrics: EngineMetrics, timer_metrics: TimerMetrics,
                 on_commit: Callable[[], None], batch_size: int = 500, poll_seconds: float = 1.0) -> None:
        self._engine = engine
        self._repo = repository
        self._timers = timers
        self._configs = configs
        self._clock = clock
        self._metrics = metrics
        self._timer_metrics = timer_metrics
        self._on_commit = on_commit
        self._batch_size = batch_size
        self._poll = poll_seconds
        self._writer = DecisionWriter(repository, timers)
        self._wake = asyncio.Event()
        self._next_due: datetime | None = None
        self._backoff = Backoff(base_seconds=0.1, max_seconds=5.0)

    def wake(self) -> None:
        """Start a pass now (or right after the one under way)."""
        self._wake.set()

    def wake_at(self, due_at: datetime) -> None:
        """Start a pass at `due_at` (aware UTC) at the latest: now when it is due already, at `due_at` when that
        comes before the next poll; a later one is the polls' to find."""
        wait = (due_at - self._clock.now()).total_seconds()
        if wait >= self._poll:
            return
        if wait > 0 and (self._next_due is None or due_at < self._next_due):
            self._next_due = due_at
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Fire due timers until `stop` is set; a failing pass is logged and retried with backoff (its
        transaction rolled back: nothing of it happened)."""
        failures = 0
        while not stop.is_set():
            if not runtime.INTAKE.open:  # draining for a stop: the timers wait in PostgreSQL
                await self._idle(self._poll)
                continue
            try:
                done = await self.fire_once()
                failures = 0
            except Exception as exc:
                failures += 1
                log.warning("timer pass failed (%d in a row), retrying: %r", failures, exc)
                await asyncio.sleep(self._backoff.delay(min(failures, 10)))
                continue
            if done.settled:
                continue
            await self._idle(LOCKED_RETRY_SECONDS if done.left else self._poll)

    async def _idle(self, longest: float) -> None:
        """Wait for a wake-up, the earliest scheduled due time or `longest` seconds, whichever comes first."""
        timeout = longest
        if self._next_due is not None:
            timeout = min(timeout, max(0.0, (self._next_due - self._clock.now()).total_seconds()))
        if timeout > 0 and not self._wake.is_set():
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            except TimeoutError:
                pass
        self._wake.clear()
        if self._next_due is not None and self._next_due <= self._clock.now():
            self._next_due = None

    async def fire_once(self) -> Pass:
        """One pass (one transaction): settle up to `batch_size` due timers and write their decisions."""
        now = self._clock.now()
        async with self._engine.begin() as conn:
            claim = await self._timers.claim_due(conn, now, self._batch_size)
            if not claim.timers:
                return Pass(left=claim.skipped)
            tenants = {c.timer.tenant for c in claim.timers}
            configs = await self._configs.configs(conn, tenants)
            profiles = await self._repo.load_profiles(conn, {(c.timer.tenant, c.timer.contact_key)
                                                             for c in claim.timers})
            planned: list[tuple[Cause, Decision]] = []
            settled: list[tuple[str, str, str, str | None]] = []
            for claimed in claim.timers:
                timer = claimed.timer
                cause = _cause(claimed)
                if timer.expired(now):
                    reason = f"expired: due {timer.due_at.isoformat()}, seen {now.isoformat()}"
                    settled.append((timer.tenant, timer.key, "expired", reason))
                    planned.append((cause, Suppress(timer.flow, reason, timer.contact_key, timer.key,
                                                    outcome="expired")))
                    continue
                profile = profiles.get((timer.tenant, timer.contact_key)) or ContactProfile(timer.contact_key)
                decisions, failure = _decide(profile, claimed, now, configs[timer.tenant])
                settled.append((timer.tenant, timer.key, "fired", failure))
                planned.extend((cause, d) for d in decisions)
                # The person's next timer in this pass decides with what this one remembered (R-T6.2: two drops
                # of one item due together see each other's send).
                profiles[(timer.tenant, timer.contact_key)] = remembered(profile, decisions)
            # Settled before the decisions are written: a flow that schedules the same key again re-arms it.
            await self._timers.settle(conn, settled, now)
            applied = await self._writer.apply(conn, planned, now)
        applied.count(self._metrics, now)
        for claimed, (_, _, state, _) in zip(claim.timers, settled, strict=True):
            self._timer_metrics.timers.labels(claimed.timer.flow, state).inc()
            if state == "fired":
                self._timer_metrics.lag.observe(max(0.0, (now - claimed.timer.due_at).total_seconds()))
        if claim.skipped:
            self._timer_metrics.left_locked.inc(claim.skipped)
        if applied.outbox:
            self._on_commit()
        if applied.earliest_due is not None:
            self.wake_at(applied.earliest_due)
        expired = sum(1 for s in settled if s[2] == "expired")
        return Pass(fired=len(settled) - expired, expired=expired, left=claim.skipped)


def remembered(profile: ContactProfile, decisions: Sequence[Decision]) -> ContactProfile:
    """`profile` with the `Remember` decisions among `decisions` applied to its memory, in order (a None value
    deletes the key) — what the database holds once they are written."""
    for decision in decisions:
        if isinstance(decision, Remember) and decision.contact_key == profile.contact_key:
            entries = {k: v for k, v in profile.slot(decision.slot).items() if k != decision.key}
            if decision.value is not None:
                entries[decision.key] = decision.value
            profile = profile.with_slot(decision.slot, entries)
    return profile


def _cause(claimed: ClaimedTimer) -> Cause:
    """A timer's decisions name the event that scheduled it (its occurrence: the due time when not recorded)."""
    timer = claimed.timer
    return Cause(timer.tenant, timer.event_id, TIMER_EVENT_TYPE, claimed.event_occurred_at or timer.due_at,
                 None, claimed.correlation_id)


def _decide(profile: ContactProfile, claimed: ClaimedTimer, now: datetime,
            config: EngineConfig) -> tuple[tuple[Decision, ...], str | None]:
    """The flow's decisions for a due timer, and None; a flow that fails on it (a bug) must not stall every
    other timer: the timer is settled as fired with the failure as its reason and a suppression says why."""
    timer = claimed.timer
    try:
        return on_timer(profile, timer, now, config), None
    except Exception as exc:
        log.exception("flow %s failed on timer %s of tenant %s", timer.flow, timer.key, timer.tenant)
        reason = f"failed: flow {timer.flow} raised {type(exc).__name__}: {exc}"[:500]
        return (Suppress(timer.flow, reason, timer.contact_key, timer.key),), reason
