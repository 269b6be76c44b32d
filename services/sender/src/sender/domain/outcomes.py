"""What a provider error means — for this message, this contact and this account (CLOUD-API.md §4.3, R-S7).

Branch on Meta's `error.code`, never on the HTTP status (Meta says so). Each code of the table in
CLOUD-API.md §4.3 has one row in `MEANINGS`; `after_error` turns a row into what the send log does:

- for the message: retry soon with backoff, retry this recipient later (pair limit, 4^x s), retry
  once not before 24 h, wait for the account's hold to end (no attempt used), or fail now;
- for the contact: mark the number invalid (only when the code means the number cannot receive
  WhatsApp, and for 131026 only after the 24 h retry also failed), the marketing opt-out (131050,
  which ingest publishes as `contact.marketing_preference_changed` when it arrives by webhook), or nothing;
- for the account: hold every send of the account for a while (spam limit, policy restriction,
  locked, billing, unregistered number, token or permission problems), or nothing.

R-S7: a failed send is retried once after 24 h — 131026 (undeliverable, which includes temporary
causes), 131049 ("not before 24 h"), an unknown failure, and a retryable error whose backoff
retries were exhausted (e.g. 131000). 131050 is never retried. 131030 (test allow-list) is not an
invalid number.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Literal

from scrm_common.backoff import Backoff

LATE_RETRY_DELAY = timedelta(hours=24)  # R-S7 "retried once after 24 h"; Meta: 131049 "not before 24 h"


class ForMessage(Enum):
    """What an error means for the message that got it."""

    RETRY = "retry soon with exponential backoff"
    RETRY_RECIPIENT = "retry this recipient later (4^x s); other recipients are unaffected"
    RETRY_AFTER_24H = "retry once, not before 24 h"
    HOLD = "wait until the account's hold ends; no attempt is used"
    FAIL = "fail now; a retry cannot help"


class ForContact(Enum):
    """What an error means for the contact the message went to."""

    NOTHING = "nothing"
    INVALID_NUMBER = "the number cannot receive WhatsApp: mark it invalid (once the message finally fails)"
    MARKETING_OPT_OUT = "the contact stopped marketing messages"


@dataclass(frozen=True, slots=True)
class Meaning:
    """One row of the code table: what `code` means for the message, the contact and the account.

    `account_hold` is how long every send of the account waits before one probe is tried again
    (our choice where Meta names no duration); None means the account is not affected.
    """

    code: int | None
    summary: str
    message: ForMessage
    contact: ForContact = ForContact.NOTHING
    account_hold: timedelta | None = None


def _row(code: int, summary: str, message: ForMessage, contact: ForContact = ForContact.NOTHING,
         account_hold: timedelta | None = None) -> tuple[int, Meaning]:
    return code, Meaning(code, summary, message, contact, account_hold)


_M, _H, _D = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
RETRY, RECIPIENT, LATE, HOLD, FAIL = (ForMessage.RETRY, ForMessage.RETRY_RECIPIENT, ForMessage.RETRY_AFTER_24H,
                                      ForMessage.HOLD, ForMessage.FAIL)

# CLOUD-API.md §4.3, one row per code.
MEANINGS: dict[int, Meaning] = dict([
    # -- the account or its credentials: nothing this account sends can succeed until fixed ---------------
    _row(0, "access token could not be authenticated", HOLD, account_hold=10 * _M),
    _row(190, "access token expired or invalid", HOLD, account_hold=10 * _M),
    _row(3, "capability or permission missing", HOLD, account_hold=_H),
    _row(10, "permission not granted or removed", HOLD, account_hold=_H),
    _row(131005, "access denied", HOLD, account_hold=_H),
    _row(33, "business phone number deleted", HOLD, account_hold=_D),
    _row(368, "account restricted or disabled for a policy violation", HOLD, account_hold=_D),
    _row(131031, "account locked", HOLD, account_hold=_D),
    _row(131042, "billing or payment-method problem", HOLD, account_hold=_H),
    _row(131045, "phone number not registered", HOLD, account_hold=_H),
    _row(131048, "spam rate limit: earlier messages were blocked or reported", HOLD, account_hold=6 * _H),
    _row(131064, "messaging limit after template-classification violations", HOLD, account_hold=_D),
    _row(131057, "account in maintenance mode", HOLD, account_hold=_M),
    # -- passing trouble: back off and try again ---------------------------------------------------------
    _row(1, "unknown or possible server error", RETRY),
    _row(2, "service temporarily down or overloaded", RETRY),
    _row(4, "app-level call-rate limit", RETRY),
    _row(80007, "WABA-level rate limit", RETRY),
    _row(80004, "too many calls", RETRY),
    _row(130429, "throughput limit of the number", RETRY),
    _row(131000, "unknown send failure", RETRY),
    _row(131016, "service temporarily unavailable", RETRY),
    _row(133004, "server temporarily unavailable", RETRY),
    _row(133016, "too many register/deregister attempts", RETRY),
    _row(131056, "pair rate limit: too many messages to this recipient", RECIPIENT),
    # -- this recipient, not now: the one 24 h retry (R-S7) ----------------------------------------------
    _row(131026, "message undeliverable (not on WhatsApp, old app, terms not accepted, blocked, or Meta "
                 "chose not to deliver)", LATE, ForContact.INVALID_NUMBER),
    _row(131049, "not delivered to maintain healthy ecosystem engagement (per-user marketing limit)", LATE),
    # -- this message can never succeed as it is --------------------------------------------------------
    _row(131050, "the user stopped marketing messages from this business", FAIL, ForContact.MARKETING_OPT_OUT),
    _row(131047, "more than 24 h since the user last wrote: only a template may be sent", FAIL),
    _row(131030, "recipient not in the test number's allowed list", FAIL),
    _row(131021, "recipient is the sender", FAIL),
    _row(131009, "parameter value invalid", FAIL),
    _row(131008, "required parameter missing", FAIL),
    _row(100, "invalid parameter", FAIL),
    _row(135000, "generic user error in the request parameters", FAIL),
    _row(131037, "the number has no approved display name", FAIL),
    _row(131051, "unsupported message type", FAIL),
    _row(131052, "media download error", FAIL),
    _row(131053, "media upload error", FAIL),
    _row(131062, "a BSUID recipient is not supported for this message", FAIL),
    _row(131063, "marketing templates are disabled for the Cloud API on this account", FAIL),
    _row(130403, "the business has blocked this user", FAIL),
    _row(130472, "the user is part of a marketing experiment holdout", FAIL),
    _row(130497, "the account may not message users in that country", FAIL),
    _row(132000, "template parameter count mismatch", FAIL),
    _row(132001, "template does not exist in that language or is not approved", FAIL),
    _row(132005, "filled template text too long", FAIL),
    _row(132007, "template content violates policy", FAIL),
    _row(132012, "template parameter format mismatch", FAIL),
    _row(132015, "template paused for low quality", FAIL),
    _row(132016, "template disabled", FAIL),
    _row(132018, "template parameter text not accepted (new line, tab or more than 4 spaces)", FAIL),
    _row(132068, "flow blocked", FAIL),
    _row(132069, "flow throttled", FAIL),
])
_PERMISSION = Meaning(None, "permission not granted or removed", HOLD, account_hold=_H)  # codes 200–299
_NO_ANSWER = Meaning(None, "no answer from the provider", RETRY)
_FAILED_WITHOUT_CODE = Meaning(None, "failed after the provider accepted it, no code given", LATE)


def meaning(code: int | None, *, http_status: int | None = None, asynchronous: bool = False) -> Meaning:
    """The row for `code`; codes outside the table fall back to R-S7's "retry once after 24 h".

    `code` None means no Meta error body: a request that never got an answer (retry soon), or an
    asynchronous `failed` status without an error (retry once after 24 h). An unknown code with a
    5xx HTTP status is retried soon.
    """
    if code is None:
        return _FAILED_WITHOUT_CODE if asynchronous else _NO_ANSWER
    if code in MEANINGS:
        return MEANINGS[code]
    if 200 <= code <= 299:
        return Meaning(code, _PERMISSION.summary, HOLD, account_hold=_PERMISSION.account_hold)
    if http_status is not None and http_status >= 500 and not asynchronous:
        return Meaning(code, f"unknown error {code} from a failing server", RETRY)
    return Meaning(code, f"unknown error {code}", LATE)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """R-S7: exponential backoff with jitter, a bounded number of attempts per round."""

    max_attempts: int = 8
    backoff: Backoff = Backoff(base_seconds=0.5, max_seconds=60.0)

    def next_attempt_at(self, next_: ForMessage, attempts: int, now: datetime, jitter: float) -> datetime | None:
        """When to try again after `attempts` attempts, or None when they are exhausted."""
        if attempts >= self.max_attempts:
            return None
        if next_ is ForMessage.RETRY_RECIPIENT:
            return now + timedelta(seconds=4 ** max(0, attempts - 1))  # Meta's advice: 1, 4, 16 … s
        ceiling = min(self.backoff.max_seconds, self.backoff.base_seconds * 2 ** max(0, attempts - 1))
        return now + timedelta(seconds=ceiling / 2 + ceiling / 2 * jitter)


@dataclass(frozen=True, slots=True)
class AfterError:
    """What the send log does with a message after an error (R-S7, R-S8).

    `action` "retry" queues it again at `at` (`late_retry`: this is its one 24 h retry, to be
    recorded); "hold" queues it at `at` without using an attempt and holds the account until then;
    "fail" ends it. `mark_invalid` marks the number; `opt_out` reports the marketing opt-out.
    """

    action: Literal["retry", "hold", "fail"]
    at: datetime | None
    reason: str
    late_retry: bool = False
    mark_invalid: bool = False
    opt_out: bool = False

    @property
    def hold_account_until(self) -> datetime | None:
        """Until when the whole account waits (only for a hold)."""
        return self.at if self.action == "hold" else None


def after_error(found: Meaning, *, detail: str, attempts: int, late_retry_attempt: int | None,
                late_retry_code: int | None, now: datetime, policy: RetryPolicy, jitter: float) -> AfterError:
    """Decide a message's fate after an error (R-S7).

    `attempts` counts every provider call of the message; `late_retry_attempt` is the attempt count
    when its one 24 h retry was scheduled (None while unused), `late_retry_code` the error code that
    scheduled it (None: no code). Backoff counts attempts since then. A number is marked invalid only
    when the code that ends the message is the one its 24 h retry was taken for (131026 twice): one
    131026 after a retry for another reason (131049, an exhausted 131000) may be temporary.
    Raises nothing; `jitter` in [0, 1].
    """
    label = f"{found.summary} ({found.code})" if found.code is not None else found.summary
    said = f"{label}: {detail}" if detail and detail != found.summary else label
    if found.message is ForMessage.HOLD:
        hold = found.account_hold or timedelta(hours=1)
        until = now + hold
        return AfterError("hold", until, f"account held until {until.isoformat(timespec='seconds')}: {said}")
    if found.message is ForMessage.FAIL:
        return AfterError("fail", None, said, mark_invalid=found.contact is ForContact.INVALID_NUMBER,
                          opt_out=found.contact is ForContact.MARKETING_OPT_OUT)
    late_used = late_retry_attempt is not None
    if found.message in (ForMessage.RETRY, ForMessage.RETRY_RECIPIENT):
        in_round = attempts - (late_retry_attempt or 0)
        at = policy.next_attempt_at(found.message, in_round, now, jitter)
        if at is not None:
            return AfterError("retry", at, said)
        said = f"gave up after {in_round} attempts: {said}"
    if not late_used:
        at = now + LATE_RETRY_DELAY
        return AfterError("retry", at, f"{said}; retrying once at {at.isoformat(timespec='seconds')} (R-S7)",
                          late_retry=True)
    return AfterError("fail", None, f"{said}; failed again after the 24 h retry",
                      mark_invalid=found.contact is ForContact.INVALID_NUMBER and late_retry_code == found.code)
