"""When the graceful stop calls the stack drained, and what it says is still in flight."""

from __future__ import annotations

import pytest

from scrm_stack.drain import Observation, asyncpg_dsn, drained, groups_of, still_in_flight

ENDS = {("scrm.events.v1", 0): 10, ("scrm.send-commands.v1", 0): 4}
IDLE = Observation(lag={("trigger-engine", "scrm.events.v1"): 0}, outbox={"sender": 0}, ends=ENDS)
BEHIND = Observation(lag={("trigger-engine", "scrm.events.v1"): 3}, outbox={"sender": 0}, ends=ENDS)
OUTBOX = Observation(lag={("trigger-engine", "scrm.events.v1"): 0}, outbox={"trigger_engine": 2}, ends=ENDS)
MOVED = Observation(lag={("trigger-engine", "scrm.events.v1"): 0}, outbox={}, ends={**ENDS, ("scrm.events.v1", 0): 11})
BLIND = Observation(error="broker: KafkaConnectionError()")


@pytest.mark.parametrize(("previous", "now", "expected"), [
    (None, IDLE, False),       # one look is never enough
    (IDLE, IDLE, True),        # two idle looks, nothing published in between
    (BEHIND, IDLE, False),
    (IDLE, BEHIND, False),
    (OUTBOX, IDLE, False),
    (IDLE, OUTBOX, False),
    (IDLE, MOVED, False),      # something was published between the looks
    (BLIND, IDLE, False),      # a look that could not see is not idle
    (IDLE, BLIND, False),
])
def test_drained_needs_two_idle_looks_with_the_same_end_offsets(previous: Observation | None, now: Observation,
                                                                 expected: bool) -> None:
    assert drained(previous, now) is expected


def test_pending_names_each_group_topic_and_outbox() -> None:
    obs = Observation(lag={("sender", "scrm.send-commands.v1"): 1, ("segmenter", "scrm.events.v1"): 7,
                           ("reporting", "scrm.events.v1"): 0},
                      outbox={"trigger_engine": 2, "sender": 0}, error="PostgreSQL: timeout")
    assert obs.pending() == [
        "segmenter has 7 records of scrm.events.v1 to apply",
        "sender has 1 record of scrm.send-commands.v1 to apply",
        "trigger_engine.outbox has 2 rows to publish",
        "could not look: PostgreSQL: timeout",
    ]
    assert not obs.idle


def test_still_in_flight_tells_what_a_forced_stop_leaves() -> None:
    assert still_in_flight(None) == "nothing was observed yet"
    assert still_in_flight(IDLE).startswith("nothing")
    assert still_in_flight(BEHIND) == "trigger-engine has 3 records of scrm.events.v1 to apply"


def test_asyncpg_dsn_drops_the_driver_name() -> None:
    assert asyncpg_dsn("postgresql+asyncpg://postgres@/scrm?host=/tmp/x") == "postgresql://postgres@/scrm?host=/tmp/x"


def test_the_drain_waits_for_every_consumer_group_the_services_start() -> None:
    """Every `batch_consumer(group_id=…)` in the services is a group the drain knows: a group it did not
    wait for would lose what it had not applied when the memory-only broker stops."""
    import ast
    import re
    from pathlib import Path

    from scrm_stack.drain import KNOWN_GROUPS

    root = Path(__file__).resolve().parents[3] / "services"
    everywhere: dict[str, str] = {}
    found: list[tuple[dict[str, str], ast.expr]] = []
    for path in root.glob("*/src/*/**/*.py"):
        local: dict[str, str] = {}
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and \
                    isinstance(node.value.value, str) and len(node.targets) == 1 and \
                    isinstance(node.targets[0], ast.Name) and re.fullmatch(r"[A-Z_]+", node.targets[0].id):
                local[node.targets[0].id] = node.value.value
                everywhere.setdefault(node.targets[0].id, node.value.value)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "batch_consumer":
                found.extend((local, k.value) for k in node.keywords if k.arg == "group_id")
    groups = {c.value if isinstance(c, ast.Constant) else local.get(c.id) or everywhere[c.id]  # type: ignore[attr-defined]
              for local, c in found}
    assert len(groups) >= 7, groups
    assert groups <= set(KNOWN_GROUPS), groups - set(KNOWN_GROUPS)


# Phase 2 of the stop: relays paused, rows left in an outbox are durable; only the groups must catch up.
@pytest.mark.parametrize(("previous", "now", "expected"), [
    (None, IDLE, False),
    (IDLE, IDLE, True),
    (OUTBOX, OUTBOX, True),    # outbox rows wait in PostgreSQL for the next start
    (BEHIND, IDLE, False),
    (IDLE, BEHIND, False),
    (IDLE, MOVED, False),      # something was published between the looks
    (BLIND, IDLE, False),
    (IDLE, BLIND, False),
])
def test_phase_2_drained_ignores_outbox_rows_but_not_lag_or_published_records(
        previous: Observation | None, now: Observation, expected: bool) -> None:
    assert drained(previous, now, outboxes=False) is expected


def test_without_a_gone_service_leaves_out_its_groups_and_its_outbox_only() -> None:
    obs = Observation(lag={("trigger-engine", "scrm.events.v1"): 5, ("trigger-engine-dead-letters", "dl"): 1,
                           ("segmenter", "scrm.events.v1"): 2},
                      outbox={"trigger_engine": 3, "sender": 4}, ends=ENDS)
    rest = obs.without(["trigger-engine"])
    assert dict(rest.lag) == {("segmenter", "scrm.events.v1"): 2}
    assert dict(rest.outbox) == {"sender": 4}
    assert rest.ends == obs.ends
    assert obs.lag_of(groups_of(["trigger-engine"])) == 6
    assert obs.without(["simulator"]) == obs  # no group, no outbox: nothing left out


def test_every_known_group_has_its_service() -> None:
    from scrm_stack.drain import GROUP_SERVICE, KNOWN_GROUPS
    from scrm_stack.stack import SERVICES

    assert set(GROUP_SERVICE) == set(KNOWN_GROUPS)
    assert set(GROUP_SERVICE.values()) <= set(SERVICES)
    assert groups_of(["sender"]) == ["sender", "sender-evidence"]
    assert groups_of(["ingest", "demo-shop"]) == ["ingest-accounts", "ingest-links"]
