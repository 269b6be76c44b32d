"""HTTP routes of reporting: the overview (CONTRACT §4), for the caller's tenant only."""

# No `from __future__ import annotations`: FastAPI must see the dependency annotations built here.
from collections.abc import Awaitable, Callable
from datetime import UTC, date
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query
from prometheus_client import CollectorRegistry

from reporting.domain.policy import ReportPolicy
from reporting.domain.report import BadRange, Overview, build_overview, report_range
from reporting.handlers import ReportStore
from scrm_common.clock import Clock
from scrm_common.http import KEY_ERRORS, READ, KeyIntrospection, Principal, error_responses, ops_router, service_app


def reports_router(*, store: ReportStore, keys: KeyIntrospection, clock: Clock, policy: ReportPolicy) -> APIRouter:
    """`GET /v1/reports/overview?from=YYYY-MM-DD&to=YYYY-MM-DD` (inclusive UTC days; role read or admin)."""
    router = APIRouter(tags=["reports"], responses=KEY_ERRORS)
    Caller = Annotated[Principal, Depends(keys.require(READ))]

    @router.get("/v1/reports/overview", response_model=Overview,
                responses={422: {**error_responses(422)[422],
                                 "description": "bad dates or range ('from' after 'to', over 366 days)"}})
    async def overview(
        caller: Caller,
        start: Annotated[date | None, Query(alias="from", description="first UTC day (default: to - 6 days)")]
        = None,
        end: Annotated[date | None, Query(alias="to", description="last UTC day, inclusive (default: today)")]
        = None,
    ) -> Overview:
        """Sent, delivered, read, replied, clicked, failed, purchased and revenue per day and flow, with rates."""
        today = clock.now().astimezone(UTC).date()
        try:
            first, last = report_range(start, end, today, policy)
        except BadRange as exc:
            raise HTTPException(422, detail=[{"field": "query.from", "reason": str(exc)}]) from None
        counts, revenue = await store.overview_rows(caller.tenant, first, last)
        return build_overview(caller.tenant, first, last, counts, revenue)

    return router


def create_app(*, store: ReportStore, keys: KeyIntrospection, clock: Clock, policy: ReportPolicy,
               registry: CollectorRegistry, ready: Callable[[], Awaitable[bool]]) -> FastAPI:
    """Reporting's HTTP application; `keys` resolves API keys and checks each route's role."""
    app = service_app("scrm reporting", "0.1.0", description="Reports over the event log, and dead letters")
    app.include_router(ops_router(registry, ready))
    app.include_router(reports_router(store=store, keys=keys, clock=clock, policy=policy))
    return app
