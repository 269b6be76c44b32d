"""Template sync asks again when the Cloud API says "not now" (rate limits, 5xx, 429, temporary codes) and
answers 503 after its budget; only a real refusal (a bad token) is a 422 at once."""

from __future__ import annotations

from typing import Any

import pytest

from scrm_common.clock import FixedClock
from sender.adapters.cloud_api import Rejected, TemplatePage
from sender.adapters.templates import Backoff, SyncFailed, SyncTarget, TemplateSync


class _Client:
    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.calls = 0

    async def list_templates(self, **_: Any) -> Any:
        self.calls += 1
        return self.answers.pop(0) if self.answers else self.answers_last

    answers_last: Any = None


def _sync(client: _Client) -> TemplateSync:
    async def no_sleep(_: float) -> None:
        return None
    from datetime import UTC, datetime
    return TemplateSync(engine=None, client=client, clock=FixedClock(datetime(2026, 12, 1, tzinfo=UTC)),  # type: ignore[arg-type]
                        backoff=Backoff(), sleep=no_sleep)


TARGET = SyncTarget(account_id="100000000000002", waba_id="200000000000002", access_token="t")
PAGE = TemplatePage(data=[], after=None, has_next=False)


@pytest.mark.parametrize("transient", [
    Rejected(code=None, http_status=502, details="bad gateway"),
    Rejected(code=2, http_status=503, details="service unavailable"),
    Rejected(code=130429, http_status=400, details="rate limit hit"),
    Rejected(code=80007, http_status=400, details="WABA rate limit"),
    Rejected(code=None, http_status=429, details="too many"),
])
async def test_a_temporary_failure_is_asked_again(transient: Rejected) -> None:
    client = _Client([transient])
    client.answers_last = PAGE
    assert await _sync(client)._page(TARGET, None) == PAGE
    assert client.calls == 2


async def test_a_temporary_failure_past_the_budget_is_a_503_not_a_refusal() -> None:
    client = _Client([])
    client.answers_last = Rejected(code=None, http_status=500, details="oops")
    with pytest.raises(SyncFailed) as failed:
        await _sync(client)._page(TARGET, None)
    assert failed.value.status == 503
    assert "HTTP 500" in str(failed.value)


async def test_a_refused_token_is_a_422_at_once() -> None:
    client = _Client([Rejected(code=190, http_status=401, details="Invalid OAuth access token")])
    with pytest.raises(SyncFailed) as failed:
        await _sync(client)._page(TARGET, None)
    assert failed.value.status == 422
    assert client.calls == 1
