"""Phase 2 of the graceful stop relies on this: with the process's intake closed (SIGUSR1,
`scrm_common.runtime.INTAKE`) the outbox relay publishes nothing and the sender's dispatcher claims nothing;
with it open (a normal run, or SIGUSR2) both work as ever."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from scrm_common import runtime
from scrm_common.db.outbox import OutboxRelay
from sender.handlers import Dispatcher


class CountingIntake(runtime.Intake):
    """An intake that counts how often a loop looked at it and stops the loop after `stop_after` looks."""

    def __init__(self, stop: asyncio.Event, stop_after: int) -> None:
        super().__init__()
        self.looks = 0
        self._stop, self._stop_after = stop, stop_after

    @property
    def open(self) -> bool:
        self.looks += 1
        if self.looks >= self._stop_after:
            self._stop.set()
        return self.closed_at is None


class Untouchable:
    """An engine the code under test must not use while paused."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"engine.{name} used while intake is closed")


def relay() -> OutboxRelay:
    return OutboxRelay(service="pause-test", engine=Untouchable(), producer=None,  # type: ignore[arg-type]
                       batch_size=10, poll_seconds=0.001, registry=CollectorRegistry())


async def test_a_closed_intake_pauses_the_relay_and_reopening_resumes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    stop = asyncio.Event()
    intake = CountingIntake(stop, stop_after=5)
    intake.closed_at = 0.0  # closed, as SIGUSR1 leaves it
    monkeypatch.setattr(runtime, "INTAKE", intake)
    outbox = relay()
    calls: list[int] = []

    async def relay_once() -> int:
        calls.append(1)
        return 0

    monkeypatch.setattr(outbox, "relay_once", relay_once)
    await asyncio.wait_for(outbox.run(stop), timeout=10)
    assert intake.looks == 5 and calls == [], "looked at the intake each pass, relayed nothing"

    intake.reopen()  # SIGUSR2
    stop.clear()
    intake.looks, intake._stop_after = 0, 3
    await asyncio.wait_for(outbox.run(stop), timeout=10)
    assert len(calls) >= 2, "relays again once intake is open"


def dispatcher() -> Dispatcher:
    return Dispatcher(engine=Untouchable(), log_=None, client=None, clock=None, metrics=None,  # type: ignore[arg-type]
                      retry=None, poll_seconds=0.001, doubt_timeout=timedelta(seconds=30),  # type: ignore[arg-type]
                      on_commit=lambda: None, evidence_caught_up=lambda: None)


async def test_a_closed_intake_stops_the_dispatcher_claiming(monkeypatch: pytest.MonkeyPatch) -> None:
    intake = runtime.Intake()
    intake.closed_at = 0.0
    monkeypatch.setattr(runtime, "INTAKE", intake)
    assert await dispatcher().dispatch_once() is False  # the engine was not touched: nothing looked up, claimed

    intake.reopen()
    with pytest.raises(AssertionError, match="engine.connect used"):
        await dispatcher().dispatch_once()  # open: it looks for due work as ever


def test_a_fresh_process_starts_with_intake_open() -> None:
    assert runtime.Intake().open
    assert runtime.INTAKE.open, "nothing closes intake but SIGUSR1"
