"""HTTP routes of reporting: the overview (CONTRACT §4) and the gate report (issue 8), for the caller's tenant only."""

# No `from __future__ import annotations`: FastAPI must see the dependency annotations built here.
from collections.abc import Awaitable, Callable
from datetime import UTC, date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query
from prometheus_client import CollectorRegistry

from reporting.domain.gate_report import GateReport, build_gate_report
from reporting.domain.policy import ReportPolicy
from reporting.domain.report import BadRange, Overview, build_overview, report_range
from reporting.handlers import ReportStore
from scrm_common.clock import Clock
from scrm_common.contracts.wire import PLAIN_TEXT_PATTERN
from scrm_common.http import KEY_ERRORS, READ, KeyIntrospection, Principal, error_responses, ops_router, service_app


def reports_router(*, store: ReportStore, keys: KeyIntrospection, clock: Clock, policy: ReportPolicy) -> APIRouter:
    """`GET /v1/reports/overview?from=YYYY-MM-DD&to=YYYY-MM-DD` and `GET /v1/reports/gate?from&to&flow`
    (inclusive UTC days; role read or admin)."""
    router = APIRouter(tags=["reports"], responses=KEY_ERRORS)
    Caller = Annotated[Principal, Depends(keys.require(READ))]
    range_error: dict[int | str, dict[str, Any]] = {422: {**error_responses(422)[422],
                         "description": "bad dates or range ('from' after 'to', over 366 days)"}}

    def days(start: date | None, end: date | None) -> tuple[date, date]:
        today = clock.now().astimezone(UTC).date()
        try:
            return report_range(start, end, today, policy)
        except BadRange as exc:
            raise HTTPException(422, detail=[{"field": "query.from", "reason": str(exc)}]) from None

    @router.get("/v1/reports/overview", response_model=Overview, responses=range_error)
    async def overview(
        caller: Caller,
        start: Annotated[date | None, Query(alias="from", description="first UTC day (default: to - 6 days)")]
        = None,
        end: Annotated[date | None, Query(alias="to", description="last UTC day, inclusive (default: today)")]
        = None,
    ) -> Overview:
        """Sent, delivered, read, replied, clicked, failed, purchased and revenue per day and flow, with rates."""
        first, last = days(start, end)
        counts, revenue = await store.overview_rows(caller.tenant, first, last)
        return build_overview(caller.tenant, first, last, counts, revenue)

    @router.get("/v1/reports/gate", response_model=GateReport, responses=range_error)
    async def gate(
        caller: Caller,
        start: Annotated[date | None, Query(alias="from", description="first UTC day (default: to - 6 days)")]
        = None,
        end: Annotated[date | None, Query(alias="to", description="last UTC day, inclusive (default: today)")]
        = None,
        flow: Annotated[str | None, Query(min_length=1, max_length=128, pattern=PLAIN_TEXT_PATTERN,
                                          description="only this flow (trigger or campaign name)")] = None,
    ) -> GateReport:
        """What the send gate held back, per flow and rule: messages deferred at least once, of those how many
        were sent or suppressed afterwards, and messages suppressed — each counted on the UTC day of the
        deferral or suppression. Rules: R-S4 quiet hours, R-S5 frequency cap, R-S6 opt-out, R-S7 invalid
        number, WINDOW (24 h window), EXPIRED, WITHDRAWN, META-131049, R-T4.5 / R-T6.3 fatigue. A message
        deferred by two rules counts under each rule and once in its flow's and the overall totals."""
        first, last = days(start, end)
        rows = await store.gate_rows(caller.tenant, first, last, flow)
        return build_gate_report(caller.tenant, first, last, flow, rows)

    return router


def create_app(*, store: ReportStore, keys: KeyIntrospection, clock: Clock, policy: ReportPolicy,
               registry: CollectorRegistry, ready: Callable[[], Awaitable[bool]]) -> FastAPI:
    """Reporting's HTTP application; `keys` resolves API keys and checks each route's role."""
    app = service_app("scrm reporting", "0.1.0", description="Reports over the event log, and dead letters")
    app.include_router(ops_router(registry, ready))
    app.include_router(reports_router(store=store, keys=keys, clock=clock, policy=policy))
    return app
