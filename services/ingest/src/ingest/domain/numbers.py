"""Which tenant owns a WhatsApp phone number id, learnt from the sender's `account.*` events (pure).

The sender owns accounts and says so on `scrm.events.v1`: `account.registered` (the record's tenant owns the
number from now on, with its WABA), `account.removed` (it no longer does). Those events are keyed by tenant,
so one tenant's removal and another's registration of the same number may land in different partitions and
be applied in either order. Each change is therefore applied only if it is not older than the last one
applied to the number (`occurred_at`), and a removal leaves a tombstone: a late registration older than the
removal cannot bring the number back. A tenant's removal never touches a number another tenant owns.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime


@dataclass(frozen=True, slots=True)
class NumberState:
    """What ingest knows about a phone number id: its (last) owner and WABA, when that was last changed by
    an account event (None: seeded by the bootstrap, any event overrides it) and whether it was removed."""

    tenant: str
    waba_id: str | None
    changed_at: datetime | None
    removed: bool = False

    @property
    def owner(self) -> str | None:
        """The tenant webhooks for this number go to, or None when it was removed."""
        return None if self.removed else self.tenant


@dataclass(frozen=True, slots=True)
class AccountChange:
    """One `account.registered` (`registered=True`) or `account.removed` event, from `tenant`'s record."""

    tenant: str
    phone_number_id: str
    waba_id: str | None
    registered: bool
    occurred_at: datetime


def apply_change(current: NumberState | None, change: AccountChange) -> NumberState | None:
    """The number's state after `change`, or None when `change` alters nothing.

    Nothing changes for an event older than the last one applied, for a removal by a tenant that does not
    own the number, or for a repetition. A registration without a WABA id keeps the one known for the same
    tenant.
    """
    if current is not None and current.changed_at is not None and change.occurred_at < current.changed_at:
        return None
    if change.registered:
        waba = change.waba_id
        if waba is None and current is not None and current.tenant == change.tenant:
            waba = current.waba_id
        new = NumberState(change.tenant, waba, change.occurred_at, removed=False)
    elif current is None:
        new = NumberState(change.tenant, change.waba_id, change.occurred_at, removed=True)
    elif current.tenant != change.tenant:
        return None
    else:
        new = replace(current, changed_at=change.occurred_at, removed=True)
    return None if new == current else new
