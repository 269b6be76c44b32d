"""Trigger-engine HTTP: the decision log per person, found by any of their identities."""


from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.http import KeyIntrospection, Principal
from trigger_engine.adapters.db import EngineRepository
from trigger_engine.domain.identity import text_aliases


def build_router(*, engine: AsyncEngine, repository: EngineRepository, keys: KeyIntrospection) -> APIRouter:
    router = APIRouter()
    PrincipalDep = Annotated[Principal, Depends(keys.principal)]

    @router.get("/v1/contacts/{contact}/decisions")
    async def decisions(contact: str, principal: PrincipalDep,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, object]:
        """Every decision about a person, newest first, with its reason. `contact` is any of the person's
        identities: an external id, a phone (`+4915112345678`), a wa_id, a BSUID (CONTRACT §2)."""
        async with engine.connect() as conn:
            person = await repository.person_for(conn, principal.tenant, text_aliases(contact)) or contact
            rows = await repository.decisions_for(conn, principal.tenant, person, limit)
        return {"tenant": principal.tenant, "contact": contact, "person": person, "decisions": rows}

    return router
