"""The bootstrap sync at start: asked again while the provider is unavailable (it may start after the sender),
given up on a refusal or an account the tenant does not have; never fatal, and the loop ends only at the stop."""

from __future__ import annotations

import asyncio

import pytest

from sender.adapters.templates import AccountSynced, SyncFailed, UnknownAccount, sync_at_start, sync_with_retries

DOWN = SyncFailed(503, "provider_unavailable", "down")


class FakeSync:
    def __init__(self, *outcomes: Exception | None) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def sync(self, tenant: str, account_id: str | None = None) -> list[AccountSynced]:
        self.calls += 1
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome
        return [AccountSynced(account_id or "", "waba", 3)]


@pytest.mark.parametrize(("outcomes", "tries", "waits"), [
    ((None,), 1, []),
    ((DOWN, DOWN, None), 3, [2.0, 4.0]),
    ((DOWN,) * 9, 4, [2.0, 4.0, 8.0]),  # the budget: 4 tries, no wait after the last
    ((SyncFailed(422, "provider_refused", "(190) bad token"),), 1, []),  # asking again would not help
    ((UnknownAccount("100"),), 1, []),
    ((RuntimeError("database hiccup"), None), 2, [2.0]),
])
async def test_tries_within_its_budget(outcomes: tuple[Exception | None, ...], tries: int, waits: list[float]) -> None:
    fake = FakeSync(*outcomes)
    waited: list[float] = []

    async def wait(_stop: asyncio.Event, seconds: float) -> bool:
        waited.append(seconds)
        return False

    made = await sync_with_retries(fake, "demo", "100", asyncio.Event(), attempts=4, first_wait_s=2.0,  # type: ignore[arg-type]
                                   wait=wait)
    assert (made, fake.calls, waited) == (tries, tries, waits)


async def test_a_stop_during_a_wait_ends_the_tries() -> None:
    fake = FakeSync(DOWN, DOWN, None)

    async def stopped(_stop: asyncio.Event, _seconds: float) -> bool:
        return True

    assert await sync_with_retries(fake, "demo", "100", asyncio.Event(), wait=stopped) == 1  # type: ignore[arg-type]
    assert fake.calls == 1


async def test_the_loop_ends_only_at_the_stop() -> None:
    fake = FakeSync(None)
    stop = asyncio.Event()
    stop.set()  # set before it runs: it syncs once, then returns at the stop
    await asyncio.wait_for(sync_at_start(fake, "demo", "100")(stop), 5)  # type: ignore[arg-type]
    assert fake.calls == 1
