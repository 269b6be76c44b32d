"""Trigger-engine HTTP: the decision log per person, found by any of their identities, and their whole story —
the decisions merged with what the sender's send log says became of each message (issue 8 item 4)."""


import logging
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.http import KEY_ERRORS, READ, KeyIntrospection, Principal
from trigger_engine.adapters.db import EngineRepository
from trigger_engine.adapters.send_log import SendLog, SendLogUnavailable
from trigger_engine.domain.identity import text_aliases
from trigger_engine.domain.story import SENT_TO_SENDER, Decided, Logged, story

log = logging.getLogger(__name__)


class DecisionRead(BaseModel):
    """One decision about a person: which event of which type led which flow to what, and why."""

    event_id: str
    event_type: str
    flow: str
    outcome: str = Field(description="send, scheduled, cancelled, withdrawn, suppressed, expired, …; "
                                     "dead_lettered (a service gave up on the event); failed (a message decided "
                                     "here failed later: `reason` says why, `idempotency_key` names it)")
    reason: str | None
    idempotency_key: str | None = Field(description="the message's key when the decision was about a message")
    decided_at: datetime


class StoryLineRead(BaseModel):
    """One step of the person's story, from the engine's decisions or the sender's send log."""

    at: datetime = Field(description="when it happened (UTC)")
    step: str = Field(description="decided, scheduled, suppressed, expired, cancelled, withdrawn, dead_lettered, "
                                  "failed (engine); queued, deferred, sent, delivered, read, suppressed, failed "
                                  "(sender)")
    flow: str
    idempotency_key: str | None = Field(description="the message the step is about (None: about no message)")
    source: Literal["trigger-engine", "sender"]
    rule: str | None = Field(description="the gate rule (R-S4, R-S5, R-S6, WINDOW, EXPIRED, WITHDRAWN, …) that "
                                         "deferred or stopped the message")
    reason: str | None = Field(description="the human reason; a deferral's names the contact's local time, e.g. "
                                           "'quiet hours 08:00–22:00 Europe/Berlin: deferred until 2026-12-02 "
                                           "08:00 CET (07:00Z)'")
    until: datetime | None = Field(description="a deferral: the instant it waits for (UTC)")


class MessageStoryRead(BaseModel):
    """What became of one message decided for the person: did it reach them, and if not, what stopped it."""

    idempotency_key: str
    flow: str
    decided_at: datetime = Field(description="when it was first decided (UTC)")
    status: Literal["reached", "pending", "stopped", "failed", "unknown"] = Field(
        description="reached: sent to WhatsApp (or delivered, read); pending: scheduled, queued, deferred or "
                    "not in the send log yet; stopped: not sent, for good (`stopped_by`, `reason`); failed: "
                    "sending failed (`reason` with the error code); unknown: the send log could not be asked")
    reached: bool | None = Field(description="True when sent, delivered or read; None when unknown")
    pending: bool = Field(description="still waiting to be sent")
    stopped_by: str | None = Field(description="the rule ID that stopped it (R-S5, R-S4, R-S6, WINDOW, EXPIRED, "
                                               "WITHDRAWN, …) when one did")
    reason: str | None = Field(description="why it did not go, or what it waits for")
    state: str | None = Field(description="the sender's state: queued, sending, sent, failed, suppressed")
    last_step: str = Field(description="the message's latest step in `story`")
    until: datetime | None = Field(description="a deferred message: the instant it waits for (UTC)")
    expires_at: datetime | None = Field(description="from then on it is not sent (UTC)")


class DecisionsRead(BaseModel):
    """GET /v1/contacts/{contact}/decisions: `person` is the contact key `contact` resolved to.

    `decisions`: the engine's decision log, newest first (as always). `story`: the same decisions merged
    with the sender's send log, oldest first — decided → deferred until 08:00 (R-S4) → sent → delivered →
    read, or → suppressed (R-S5). `messages`: one summary per message decided for the person, oldest first.
    `send_log`: `ok` (the sender was asked), `unavailable` (it did not answer within 2 s: the story holds the
    engine's decisions only and the messages' `status` is `unknown`), `not_needed` (nothing was sent to it).
    """

    tenant: str
    contact: str
    person: str
    decisions: list[DecisionRead] = Field(description="newest first")
    send_log: Literal["ok", "unavailable", "not_needed"] = Field(
        default="not_needed", description="whether the sender's send log could be asked for the story")
    story: list[StoryLineRead] = Field(default_factory=list, description="oldest first")
    messages: list[MessageStoryRead] = Field(default_factory=list, description="oldest first")


def build_router(*, engine: AsyncEngine, repository: EngineRepository, keys: KeyIntrospection,
                 send_log: SendLog | None = None) -> APIRouter:
    """`GET /v1/contacts/{contact}/decisions` for the caller's tenant. `send_log`: the sender's send log
    (`SendLog(settings.sender_url)`); without one the story holds the engine's decisions only
    (`send_log: unavailable`)."""
    router = APIRouter(tags=["decisions"], responses=KEY_ERRORS)
    PrincipalDep = Annotated[Principal, Depends(keys.require(READ))]

    @router.get("/v1/contacts/{contact}/decisions", response_model=DecisionsRead)
    async def decisions(contact: str, principal: PrincipalDep, request: Request,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> DecisionsRead:
        """Every decision about a person, newest first, with its reason, and the person's whole story: for
        every message decided for them whether it reached them (sent, delivered, read), waits (scheduled,
        queued, deferred until a local time) or was stopped, and by which rule (the sender's send log, asked
        with the caller's key). `contact` is any of the person's identities: an external id, a phone
        (`+4915112345678`), a wa_id, a BSUID (CONTRACT §2); a person nobody decided about has empty lists.
        `limit` bounds the decisions read (newest); the story tells those. A sender that does not answer
        within 2 s makes `send_log` `unavailable`, not an error."""
        async with engine.connect() as conn:
            person = await repository.person_for(conn, principal.tenant, text_aliases(contact)) or contact
            rows = await repository.decisions_for(conn, principal.tenant, person, limit)
        decided = [DecisionRead.model_validate(r) for r in rows]
        sent_keys = {d.idempotency_key for d in decided if d.outcome == SENT_TO_SENDER and d.idempotency_key}
        logged: dict[str, Logged] | None = {}
        state: Literal["ok", "unavailable", "not_needed"] = "not_needed"
        if sent_keys:
            logged, state = await _ask(send_log, person, sent_keys, request.headers.get("authorization", ""),
                                       principal.tenant)
        told = story([Decided(**d.model_dump()) for d in reversed(decided)], logged)  # oldest first
        return DecisionsRead(tenant=principal.tenant, contact=contact, person=person, decisions=decided,
                             send_log=state,
                             story=[StoryLineRead.model_validate(line, from_attributes=True) for line in told.lines],
                             messages=[MessageStoryRead.model_validate(m, from_attributes=True)
                                       for m in told.messages])

    return router


async def _ask(send_log: SendLog | None, person: str, keys: set[str], authorization: str,
               tenant: str) -> tuple[dict[str, Logged] | None, Literal["ok", "unavailable"]]:
    """The sender's records of `keys`, or (None, unavailable) when it cannot be asked (logged)."""
    if send_log is None:
        return None, "unavailable"
    try:
        return await send_log.records(person, keys, authorization=authorization), "ok"
    except SendLogUnavailable as exc:
        log.warning("a contact's story is told without the send log: %s", exc, extra={"tenant": tenant})
        return None, "unavailable"
