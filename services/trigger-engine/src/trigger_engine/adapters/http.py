"""Trigger-engine HTTP: the decision log per person, found by any of their identities."""


from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.http import KEY_ERRORS, READ, KeyIntrospection, Principal
from trigger_engine.adapters.db import EngineRepository
from trigger_engine.domain.identity import text_aliases


class DecisionRead(BaseModel):
    """One decision about a person: which event of which type led which flow to what, and why."""

    event_id: str
    event_type: str
    flow: str
    outcome: str = Field(description="send, schedule, cancel, suppress, …; dead_lettered (a service gave up on the "
                                     "event); failed (a message decided here failed later: `reason` says why, "
                                     "`idempotency_key` names it)")
    reason: str | None
    idempotency_key: str | None = Field(description="the message's key when the decision was to send")
    decided_at: datetime


class DecisionsRead(BaseModel):
    """GET /v1/contacts/{contact}/decisions: `person` is the contact key `contact` resolved to."""

    tenant: str
    contact: str
    person: str
    decisions: list[DecisionRead] = Field(description="newest first")


def build_router(*, engine: AsyncEngine, repository: EngineRepository, keys: KeyIntrospection) -> APIRouter:
    """`GET /v1/contacts/{contact}/decisions` for the caller's tenant."""
    router = APIRouter(tags=["decisions"], responses=KEY_ERRORS)
    PrincipalDep = Annotated[Principal, Depends(keys.require(READ))]

    @router.get("/v1/contacts/{contact}/decisions", response_model=DecisionsRead)
    async def decisions(contact: str, principal: PrincipalDep,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> DecisionsRead:
        """Every decision about a person, newest first, with its reason. `contact` is any of the person's
        identities: an external id, a phone (`+4915112345678`), a wa_id, a BSUID (CONTRACT §2); a person
        nobody decided about has an empty list."""
        async with engine.connect() as conn:
            person = await repository.person_for(conn, principal.tenant, text_aliases(contact)) or contact
            rows = await repository.decisions_for(conn, principal.tenant, person, limit)
        return DecisionsRead(tenant=principal.tenant, contact=contact, person=person,
                             decisions=[DecisionRead.model_validate(r) for r in rows])

    return router
