"""Issue 8, 5a: a month of sending simulated through the send gate, checked by an independent auditor.

The full month (10,000 contacts, ~210,000 messages) is `python -m tests.audit.month`; here a fifth of it
(2,000 contacts, the same mix, every rule exercised) keeps the unit suite fast. The auditor is shown able
to fail: tampered logs — one night-time promotion, one free-form message outside the window, a suppression
without a rule, a deferral into the past, an unjustified cap suppression — each give exactly their violation.
"""

from __future__ import annotations

import ast
import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest

from tests.audit import month
from tests.audit.month import AuditReport, Entry, MonthLog, audit, format_report, simulate

CONTACTS = 2_000
SMALL = 400  # the tampered logs: every entry kind they need, audited in a fraction of the time
SEED = 8
RULES_SUPPRESSING = ("EXPIRED", "R-S5", "R-S6", "R-S7", "R-T4.5", "R-T6.3", "WINDOW")
RULES_DEFERRING = ("R-S4", "META-131049")


@pytest.fixture(scope="module")
def log() -> MonthLog:
    return simulate(CONTACTS, SEED)


@pytest.fixture(scope="module")
def small() -> MonthLog:
    return simulate(SMALL, SEED)


@pytest.fixture(scope="module")
def report(log: MonthLog) -> AuditReport:
    return audit(log)


def test_the_month_through_the_gate_has_no_violations(report: AuditReport) -> None:
    text = format_report(report)
    print(text)
    assert report.violations == [], text
    assert "(none)" not in report.suppressed_by_rule and "(none)" not in report.deferred_by_rule


def test_the_month_exercises_every_rule_in_both_hemispheres(log: MonthLog, report: AuditReport) -> None:
    assert report.zones >= 30
    assert {"America/New_York", "Europe/Berlin", "Australia/Lord_Howe"} <= set(report.dst_forward + report.dst_back)
    assert "Europe/Berlin" in report.dst_forward and "America/New_York" in report.dst_forward
    assert {"America/Santiago", "Australia/Sydney", "Pacific/Auckland", "Australia/Lord_Howe"} <= set(report.dst_back)
    assert report.messages > 40_000 and report.dispatched > 25_000 and report.dispatched_marketing > 10_000
    assert all(report.by_category[c] > 0 for c in ("marketing", "utility", "authentication", "service"))
    assert all(report.suppressed_by_rule[rule] > 0 for rule in RULES_SUPPRESSING), report.suppressed_by_rule
    assert all(report.deferred_by_rule[rule] > 0 for rule in RULES_DEFERRING), report.deferred_by_rule
    assert report.messages_deferred > 0 and report.deferrals >= report.messages_deferred
    assert report.deferral_targets_scanned > 50
    assert report.dispatched + report.suppressed + report.pending == report.messages
    flows = {log.messages[e.msg].flow for e in log.entries if e.kind == "dispatch"}
    assert {"birthday", "welcome", "broadcast", "cart", "reminder", "order", "otp", "service", "confirmation"} <= flows


# ---- the auditor can fail: tampered logs -------------------------------------------------------------


def _replace(log: MonthLog, index: int, entry: Entry) -> MonthLog:
    entries = list(log.entries)
    entries[index] = entry
    return dataclasses.replace(log, entries=tuple(entries))


def _first(log: MonthLog, kind: str, **where: object) -> int:
    return next(i for i, e in enumerate(log.entries)
                if e.kind == kind and all(getattr(e, k) == v for k, v in where.items()))


def test_a_birthday_retagged_as_a_promotion_is_one_night_time_violation(small: MonthLog) -> None:
    log = small
    i = next(i for i, e in enumerate(log.entries)
             if e.kind == "dispatch" and log.messages[e.msg].flow == "birthday")
    e = log.entries[i]
    birthday = log.messages[e.msg]
    tenant = next(t for t in month.TENANTS if t.name == log.people[birthday.contact].tenant)
    messages = list(log.messages)
    messages[birthday.id] = dataclasses.replace(birthday, flow="broadcast", quiet=tenant.quiet)  # 05:00 local
    found = audit(dataclasses.replace(log, messages=tuple(messages))).violations
    assert [(v.msg, v.check) for v in found] == [(birthday.id, "R-S4")], found


def test_a_free_form_message_sent_outside_the_window_is_one_violation(small: MonthLog) -> None:
    log = small
    i = _first(log, "suppress", rule="WINDOW")
    e = log.entries[i]
    found = audit(_replace(log, i, Entry("dispatch", e.at, e.contact, e.msg))).violations
    assert [(v.msg, v.check) for v in found] == [(e.msg, "WINDOW")], found


def test_a_suppression_without_a_rule_is_one_violation(small: MonthLog) -> None:
    log = small
    i = _first(log, "suppress", rule="R-S5")
    e = log.entries[i]
    found = audit(_replace(log, i, dataclasses.replace(e, rule=""))).violations
    assert [(v.msg, v.check) for v in found] == [(e.msg, "no rule")], found


def test_a_deferral_into_the_past_is_one_violation(small: MonthLog) -> None:
    log = small
    i = _first(log, "defer", rule="R-S4")
    e = log.entries[i]
    found = audit(_replace(log, i, dataclasses.replace(e, until=e.at - timedelta(minutes=1)))).violations
    assert [(v.msg, v.check) for v in found] == [(e.msg, "not later")], found


def test_a_promotion_sent_to_an_opted_out_contact_is_caught(small: MonthLog) -> None:
    log = small
    i = _first(log, "suppress", rule="R-S6")
    e = log.entries[i]
    found = audit(_replace(log, i, Entry("dispatch", e.at, e.contact, e.msg))).violations
    assert (e.msg, "R-S6") in [(v.msg, v.check) for v in found], found


def test_a_cap_suppression_under_every_cap_is_one_violation(small: MonthLog) -> None:
    """Over-suppression is caught too: a plain promotion (no fatigue kind) of a contact who never met the cap
    or a fatigue rule, logged as suppressed by R-S5 instead of sent."""
    log = small
    crowded = {e.contact for e in log.entries if e.kind == "suppress" and e.rule in ("R-S5", "R-T4.5", "R-T6.3")}
    i = next(i for i, e in enumerate(log.entries)
             if e.kind == "dispatch" and e.contact not in crowded
             and log.messages[e.msg].category == "marketing" and log.messages[e.msg].fatigue is None)
    e = log.entries[i]
    found = audit(_replace(log, i, Entry("suppress", e.at, e.contact, e.msg, rule="R-S5", reason="tampered"))).violations
    assert [(v.msg, v.check) for v in found] == [(e.msg, "R-S5")], found


def test_the_auditor_imports_nothing_of_the_gate() -> None:
    """Only `simulate` may import the sender (inside its body); the module and the auditor use their own code."""
    tree = ast.parse(Path(month.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    names = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
    assert not [n for n in names if n.split(".")[0] in ("sender", "scrm_common")], names
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name != "simulate":
            inner = [n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)]
            assert not inner, f"{node.name} imports {inner}"
    simulate_body = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "simulate")
    assert {n.module for n in ast.walk(simulate_body) if isinstance(n, ast.ImportFrom)} >= {"sender.domain.gate.decide"}
