"""Sender HTTP: accounts and the send log of the caller's tenant."""


from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.http import KeyIntrospection, Principal
from sender.adapters.db import SendLog


def build_router(*, engine: AsyncEngine, send_log: SendLog, keys: KeyIntrospection) -> APIRouter:
    router = APIRouter()
    PrincipalDep = Annotated[Principal, Depends(keys.principal)]

    @router.get("/v1/accounts")
    async def accounts(principal: PrincipalDep) -> dict[str, object]:
        """The tenant's WhatsApp accounts and their pacing policies (tokens are never returned)."""
        async with engine.connect() as conn:
            return {"tenant": principal.tenant, "accounts": await send_log.accounts(conn, principal.tenant)}

    @router.get("/v1/messages")
    async def messages(principal: PrincipalDep, contact: str | None = None,
                       limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, object]:
        """The send log (R-S8), newest first, optionally for one contact."""
        async with engine.connect() as conn:
            rows = await send_log.recent(conn, principal.tenant, contact, limit)
        return {"tenant": principal.tenant, "messages": rows}

    @router.get("/v1/messages/{idempotency_key}")
    async def message(idempotency_key: str, principal: PrincipalDep) -> dict[str, object]:
        async with engine.connect() as conn:
            row = await send_log.message(conn, principal.tenant, idempotency_key)
        if row is None:
            raise HTTPException(404, detail="no such message")
        return row

    return router
