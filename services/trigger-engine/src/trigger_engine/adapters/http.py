"""Trigger-engine HTTP: the decision log per contact."""


from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.http import KeyIntrospection, Principal
from trigger_engine.adapters.db import EngineRepository


def build_router(*, engine: AsyncEngine, repository: EngineRepository, keys: KeyIntrospection) -> APIRouter:
    router = APIRouter()
    PrincipalDep = Annotated[Principal, Depends(keys.principal)]

    @router.get("/v1/contacts/{contact}/decisions")
    async def decisions(contact: str, principal: PrincipalDep,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, object]:
        """Every decision about a contact, newest first, with its reason."""
        async with engine.connect() as conn:
            rows = await repository.decisions_for(conn, principal.tenant, contact, limit)
        return {"tenant": principal.tenant, "contact": contact, "decisions": rows}

    return router
