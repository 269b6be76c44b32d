"""The timer loop's wake-ups and the handler's shared decision code, without a database: merges move timer
keys like idempotency keys, and an exempt flow's policy keeps `quiet_hours: null` on the wire."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from scrm_common.clock import FixedClock
from scrm_common.contracts.commands import GatePolicy, SendMessage, TemplateMessage, parse_command
from tests.unit.trigger_engine.factories import PHONE, T0
from trigger_engine.adapters.db import EngineRepository
from trigger_engine.adapters.timers import TimerRepository
from trigger_engine.domain.decisions import Cancel, Schedule, Send
from trigger_engine.handlers import EngineMetrics, StaticConfigs, _moved, _People, _send_json
from trigger_engine.timers import TimerLoop, TimerMetrics


def loop(clock: FixedClock, poll: float = 30.0) -> TimerLoop:
    registry = CollectorRegistry()
    return TimerLoop(engine=None, repository=EngineRepository(), timers=TimerRepository(),  # type: ignore[arg-type]
                     configs=StaticConfigs(lambda t: None), clock=clock,  # type: ignore[arg-type, return-value]
                     metrics=EngineMetrics(registry), timer_metrics=TimerMetrics(registry), on_commit=lambda: None,
                     poll_seconds=poll)


async def idle_seconds(timers: TimerLoop, longest: float) -> float:
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(timers._idle(longest), timeout=5)  # noqa: SLF001
    return asyncio.get_running_loop().time() - started


async def test_a_timer_due_now_wakes_the_loop_at_once() -> None:
    timers = loop(FixedClock(T0))
    timers.wake_at(T0 - timedelta(minutes=1))
    assert await idle_seconds(timers, 30) < 0.5


async def test_a_timer_due_before_the_next_poll_shortens_the_wait() -> None:
    clock = FixedClock(T0)
    timers = loop(clock, poll=30)
    timers.wake_at(T0 + timedelta(seconds=0.2))
    assert await idle_seconds(timers, 30) < 0.5  # woken to recompute its wait
    assert 0.1 < await idle_seconds(timers, 30) < 1.0  # then waits until the due time, not the poll


async def test_a_timer_due_after_the_next_poll_is_left_to_the_poll() -> None:
    timers = loop(FixedClock(T0), poll=0.3)
    timers.wake_at(T0 + timedelta(minutes=30))
    assert 0.2 < await idle_seconds(timers, 0.3) < 1.0


def test_a_merge_moves_a_timer_key_like_an_idempotency_key() -> None:
    people = _People({})
    people.merge("acme", "guest-1", "cust-1")
    moves = {("acme", "acme|welcome|guest-1"): "acme|welcome|cust-1"}
    moved: Any = _moved(Schedule("welcome", "acme|welcome|guest-1", "guest-1", T0), "acme", people, moves)
    assert (moved.key, moved.contact_key) == ("acme|welcome|cust-1", "cust-1")
    cancel: Any = _moved(Cancel("cart", "cart|guest-1|", "guest-1", "cancelled: purchased", prefix=True),
                         "acme", people, moves)
    assert (cancel.key, cancel.contact_key, cancel.prefix) == ("cart|guest-1|", "cust-1", True)
    send: Any = _moved(Send("welcome", "acme|welcome|guest-1", "marketing", "guest-1", PHONE, "t", "en", ()),
                       "acme", people, moves)
    assert (send.idempotency_key, send.contact_key) == ("acme|welcome|cust-1", "cust-1")


def _command(policy: GatePolicy | None) -> SendMessage:
    return SendMessage(idempotency_key="k", tenant="acme", account_id="a", flow="birthday", category="marketing",
                       contact_key="c", to=PHONE, template=TemplateMessage(name="t", language="en"), event_id="e",
                       event_occurred_at=T0, decided_at=T0, policy=policy)


def test_an_exempt_flows_policy_reads_back_exempt_and_others_unchanged() -> None:
    for policy in (GatePolicy(quiet_hours_exempt=True), GatePolicy(), None):
        command = _command(policy)
        assert parse_command(_send_json(command)) == command
    assert _send_json(_command(GatePolicy())) == _command(GatePolicy()).model_dump_json(exclude_none=True).encode()
