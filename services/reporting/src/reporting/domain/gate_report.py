"""The gate report (issue 8 item 4): what the send gate held back, per flow and rule, over a range of UTC days.

Counted as `reporting.domain.gate` describes: a message counts on the UTC day of the deferral or
suppression, so "deferred_then_sent" of a range is "of the messages deferred in the range, those that
went out afterwards (possibly after the range)".
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from pydantic import BaseModel, ConfigDict, Field

from reporting.domain.gate import ANY_RULE, GateMetric


class GateCounts(BaseModel):
    """Messages the send gate held back.

    deferred: deferred at least once · deferred_then_sent: of those, handed to the provider at or after the
    deferral · deferred_then_suppressed: of those, suppressed afterwards (e.g. EXPIRED: the deferral would
    pass the message's expiry) · suppressed: will never go.
    """

    deferred: int = 0
    deferred_then_sent: int = 0
    deferred_then_suppressed: int = 0
    suppressed: int = 0


class RuleCounts(GateCounts):
    """One rule (R-S4 quiet hours, R-S5 frequency cap, R-S6 opt-out, R-S7 invalid number, WINDOW 24 h window,
    EXPIRED, WITHDRAWN, META-131049, R-T4.5 / R-T6.3 fatigue …). A message deferred by two rules counts
    under each."""

    rule: str


class GateTotals(GateCounts):
    """Each message once, with the breakdown by rule."""

    rules: list[RuleCounts]


class FlowGateCounts(GateTotals):
    """One flow (trigger or campaign); null = not attributed to a flow."""

    flow: str | None


class GateReport(BaseModel):
    """GET /v1/reports/gate."""

    model_config = ConfigDict(populate_by_name=True)

    tenant: str
    from_: date = Field(alias="from")
    to: date
    flow: str | None = None
    totals: GateTotals
    flows: list[FlowGateCounts]


def _counts(values: dict[GateMetric, int]) -> dict[str, int]:
    return {m.value: values.get(m, 0) for m in GateMetric}


def _rules(by_rule: dict[str, dict[GateMetric, int]]) -> list[RuleCounts]:
    return [RuleCounts(rule=rule, **_counts(v)) for rule, v in sorted(by_rule.items())
            if rule != ANY_RULE and any(v.values())]


def build_gate_report(tenant: str, start: date, end: date, flow: str | None,
                      rows: Iterable[tuple[date, str | None, str, str, int]]) -> GateReport:
    """Fold stored (day, flow, rule, metric, value) rows (rule '' = each message once) into the report.

    Flows sorted by name (unattributed last), rules by ID; flows and rules with nothing counted are left out.
    """
    flows: dict[str | None, dict[str, dict[GateMetric, int]]] = {}
    total: dict[str, dict[GateMetric, int]] = {}
    for _day, row_flow, rule, metric, value in rows:
        m = GateMetric(metric)
        for target in (flows.setdefault(row_flow, {}).setdefault(rule, {}), total.setdefault(rule, {})):
            target[m] = target.get(m, 0) + value
    return GateReport(
        tenant=tenant, from_=start, to=end, flow=flow,
        totals=GateTotals(**_counts(total.get(ANY_RULE, {})), rules=_rules(total)),
        flows=[FlowGateCounts(flow=f, **_counts(by_rule.get(ANY_RULE, {})), rules=_rules(by_rule))
               for f, by_rule in sorted(flows.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
               if any(any(v.values()) for v in by_rule.values())],
    )
