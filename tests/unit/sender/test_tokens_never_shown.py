"""An access token in plain is never in a repr (a traceback, a debug log of the object) nor in the message of a
failed template sync, even when the provider echoes it in its error details."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from scrm_common.clock import FixedClock
from sender.adapters.accounts import NewAccount
from sender.adapters.cloud_api import NotSent, Rejected
from sender.adapters.db import Account
from sender.adapters.templates import Backoff, SyncFailed, SyncTarget, TemplateSync
from sender.domain.accounts import AccountPolicy
from sender.domain.pacing import PacingPolicy, PacingState

TOKEN = "EAAG-secret-token-1234567890"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize("holder", [
    NewAccount("100000000000001", "200000000000001", None, TOKEN, AccountPolicy(), NOW),
    SyncTarget("100000000000001", "200000000000001", TOKEN),
    Account("demo", "100000000000001", TOKEN, PacingPolicy(), PacingState(None, 80.0, NOW), NOW),
], ids=["NewAccount", "SyncTarget", "Account"])
def test_no_repr_shows_the_token(holder: Any) -> None:
    assert TOKEN not in repr(holder) and TOKEN not in str(holder)
    assert "100000000000001" in repr(holder)  # the rest is still there to debug with
    assert holder.access_token == TOKEN


class _Client:
    def __init__(self, answer: Any) -> None:
        self.answer = answer

    async def list_templates(self, **_: Any) -> Any:
        return self.answer


async def _no_sleep(_: float) -> None:
    return None


@pytest.mark.parametrize(("answer", "status"), [
    (Rejected(code=190, http_status=401, details=f"Invalid OAuth access token - {TOKEN}"), 422),
    (Rejected(code=None, http_status=500, details=f"upstream saw Bearer {TOKEN}"), 503),
    (NotSent(f"ConnectError: Authorization: Bearer {TOKEN}"), 503),
])
async def test_a_failed_sync_masks_the_token_the_provider_echoed(answer: Any, status: int) -> None:
    sync = TemplateSync(engine=None, client=_Client(answer), clock=FixedClock(NOW),  # type: ignore[arg-type]
                        backoff=Backoff(attempts=2), sleep=_no_sleep)
    with pytest.raises(SyncFailed) as failed:
        await sync._page(SyncTarget("100000000000001", "200000000000001", TOKEN), None)
    assert failed.value.status == status
    assert TOKEN not in str(failed.value) and "***" in str(failed.value)
