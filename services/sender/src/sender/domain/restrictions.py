"""Whether an account may send now: Meta's restrictions and disablement, and our own error holds (R-S8).

Meta's `account_update` webhook (published by ingest as `account.updated`) restricts an account
with an expiry or disables it until reinstated; an account-level error code (190, 131048, 368 …,
see `outcomes.MEANINGS`) holds it for a while. What each restriction type blocks:

| kind                                     | blocks                                        | until           |
|------------------------------------------|-----------------------------------------------|-----------------|
| RESTRICTED_BIZ_INITIATED_MESSAGING       | business-initiated messages (every template)  | its expiry      |
| RESTRICTED_CUSTOMER_INITIATED_MESSAGING  | replies in the service window (free-form)     | its expiry      |
| RESTRICTED_ADD_PHONE_NUMBER_ACTION       | nothing we send (adding numbers)              | its expiry      |
| any other restriction type               | business-initiated messages (the safe side)   | its expiry      |
| DISABLED (ban_state DISABLE, DISABLED_UPDATE) | everything                               | REINSTATE       |
| error:<code> (an account-level error)    | everything                                    | the hold's end  |
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Scope = Literal["business_initiated", "customer_initiated", "all", "none"]

DISABLED = "DISABLED"
SCOPES: dict[str, Scope] = {
    "RESTRICTED_BIZ_INITIATED_MESSAGING": "business_initiated",
    "RESTRICTED_CUSTOMER_INITIATED_MESSAGING": "customer_initiated",
    "RESTRICTED_ADD_PHONE_NUMBER_ACTION": "none",
    DISABLED: "all",
}
DISABLING_EVENTS = frozenset({"DISABLED_UPDATE"})
DISABLING_BAN_STATES = frozenset({"DISABLE"})
LIFTING_BAN_STATES = frozenset({"REINSTATE"})


@dataclass(frozen=True, slots=True)
class Restriction:
    """One thing that stops an account sending: `until` None means until lifted."""

    kind: str
    scope: Scope
    until: datetime | None
    reason: str

    def active(self, now: datetime) -> bool:
        """True while it still applies."""
        return self.until is None or self.until > now

    def blocks(self, *, business_initiated: bool) -> bool:
        """True when it stops a business-initiated (template) or a free-form message."""
        if self.scope == "all":
            return True
        if self.scope == "business_initiated":
            return business_initiated
        if self.scope == "customer_initiated":
            return not business_initiated
        return False


def scope_of(kind: str) -> Scope:
    """What a Meta restriction type blocks (see the table above)."""
    return SCOPES.get(kind, "business_initiated")


def error_hold(code: int | None, until: datetime, reason: str) -> Restriction:
    """The hold an account-level error code puts on every send of the account."""
    return Restriction(f"error:{code}", "all", until, reason)


@dataclass(frozen=True, slots=True)
class Blocked:
    """Why a message may not go now, and until when (None: until lifted)."""

    kind: str
    until: datetime | None

    @property
    def reason(self) -> str:
        """The send log's reason, e.g. "account restricted (RESTRICTED_BIZ_INITIATED_MESSAGING) until …"."""
        if self.kind == DISABLED:
            return "account disabled by Meta until reinstated"
        if self.kind.startswith("error:"):
            return f"account held after error {self.kind.removeprefix('error:')} until {_iso(self.until)}"
        return f"account restricted ({self.kind}) until {_iso(self.until)}"


def _iso(at: datetime | None) -> str:
    return at.isoformat(timespec="seconds") if at is not None else "lifted"


def blocked(restrictions: Iterable[Restriction], *, business_initiated: bool, now: datetime) -> Blocked | None:
    """Whether the account may send this kind of message now; else the restriction it waits for.

    Of several applying restrictions the one lasting longest is named (until-lifted lasts longest):
    the message may go only when all have ended. Expired restrictions are ignored.
    """
    applying = [r for r in restrictions if r.active(now) and r.blocks(business_initiated=business_initiated)]
    if not applying:
        return None
    last = max(applying, key=lambda r: (r.until is None, r.until or now))
    return Blocked(last.kind, last.until)


@dataclass(frozen=True, slots=True)
class AccountChange:
    """What an `account.updated` event changes: restrictions to store, kinds to lift."""

    upsert: tuple[Restriction, ...] = ()
    lift: tuple[str, ...] = ()


def change_from_update(*, event: str | None, ban_state: str | None,
                       restrictions: Iterable[tuple[str, datetime | None]], detail: str | None,
                       now: datetime) -> AccountChange:
    """Read Meta's account update: each restriction with its expiry; DISABLE / DISABLED_UPDATE disables
    the account until a REINSTATE lifts it (SCHEDULE_FOR_DISABLE only warns). An already expired
    restriction lifts that kind."""
    upsert: list[Restriction] = []
    lift: list[str] = []
    for kind, expires_at in restrictions:
        if expires_at is not None and expires_at <= now:
            lift.append(kind)
            continue
        reason = detail or f"Meta restricted the account: {kind}"
        upsert.append(Restriction(kind, scope_of(kind), expires_at, reason))
    state = (ban_state or "").upper()
    if state in LIFTING_BAN_STATES:
        lift.append(DISABLED)
    elif state in DISABLING_BAN_STATES or (not state and (event or "").upper() in DISABLING_EVENTS):
        upsert.append(Restriction(DISABLED, "all", None, detail or "Meta disabled the account"))
    return AccountChange(tuple(upsert), tuple(lift))
