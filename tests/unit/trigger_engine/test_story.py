"""The person's whole story (issue 8 item 4), merged purely from the engine's decisions and the sender's send
log: ordered lines, and for every decided message whether it reached them and which rule stopped it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from trigger_engine.domain.story import Decided, Logged, Story, failure_text, story

T0 = datetime(2026, 12, 1, 21, 30, tzinfo=UTC)  # 22:30 in Berlin: inside quiet hours
BERLIN_8 = datetime(2026, 12, 2, 7, 0, tzinfo=UTC)
DEFERRAL = "quiet hours 08:00–22:00 Europe/Berlin: deferred until 2026-12-02 08:00 CET (07:00Z)"


def decided(key: str | None, outcome: str = "send", *, at: datetime = T0, flow: str = "welcome",
            reason: str | None = None, event_id: str = "ev-1") -> Decided:
    return Decided(event_id=event_id, event_type="contact.created", flow=flow, outcome=outcome, reason=reason,
                   idempotency_key=key, decided_at=at)


def steps(told: Story, key: str | None = None) -> list[str]:
    return [line.step for line in told.lines if key is None or line.idempotency_key == key]


def test_a_deferred_welcome_then_sent_delivered_read_is_told_in_order_and_reached() -> None:
    rec = Logged("w1", state="sent", rule="R-S4", queued_at=T0 + timedelta(seconds=1),
                 deferred_until=BERLIN_8, sent_at=BERLIN_8 + timedelta(seconds=2),
                 delivered_at=BERLIN_8 + timedelta(seconds=3), read_at=BERLIN_8 + timedelta(minutes=5))
    told = story([decided("w1")], {"w1": rec})
    assert steps(told) == ["decided", "queued", "deferred", "sent", "delivered", "read"]
    deferred = told.lines[2]
    assert deferred.until == BERLIN_8 and deferred.source == "sender"
    (summary,) = told.messages
    assert (summary.status, summary.reached, summary.pending, summary.stopped_by) == ("reached", True, False, None)
    assert summary.last_step == "read" and summary.state == "sent"


def test_a_deferral_keeps_its_rule_and_instant_after_the_message_was_sent() -> None:
    """The sender keeps `rule` and `deferred_until` when it sends a deferred message and clears `error_reason`:
    "deferred until 08:00 Europe/Berlin (R-S4) → sent → delivered" stays told."""
    rec = Logged("w1", state="sent", rule="R-S4", error_reason=None, queued_at=T0 + timedelta(seconds=1),
                 deferred_until=BERLIN_8, sent_at=BERLIN_8 + timedelta(seconds=2),
                 delivered_at=BERLIN_8 + timedelta(seconds=4))
    told = story([decided("w1")], {"w1": rec})
    assert steps(told) == ["decided", "queued", "deferred", "sent", "delivered"]
    deferred = told.lines[2]
    assert (deferred.rule, deferred.until, deferred.reason, deferred.at) == (
        "R-S4", BERLIN_8, None, T0 + timedelta(seconds=1))
    (summary,) = told.messages
    assert (summary.status, summary.stopped_by, summary.last_step) == ("reached", None, "delivered")


def test_a_deferral_whose_reason_the_sender_still_had_keeps_it_while_the_message_is_being_sent() -> None:
    rec = Logged("w1", state="sending", rule="R-S4", error_reason=DEFERRAL, queued_at=T0, deferred_until=BERLIN_8)
    deferred = next(line for line in story([decided("w1")], {"w1": rec}).lines if line.step == "deferred")
    assert (deferred.rule, deferred.reason, deferred.until) == ("R-S4", DEFERRAL, BERLIN_8)


def test_a_deferred_message_that_failed_names_the_deferral_and_the_failure_apart() -> None:
    rec = Logged("w1", state="failed", rule="R-S5", error_reason="message undeliverable", error_code=131026,
                 queued_at=T0, deferred_until=BERLIN_8, sent_at=BERLIN_8 + timedelta(seconds=1))
    told = story([decided("w1")], {"w1": rec})
    assert steps(told) == ["decided", "queued", "deferred", "sent", "failed"]
    deferred = told.lines[2]
    assert (deferred.rule, deferred.reason) == ("R-S5", None), "the failure's text is not the deferral's"
    (summary,) = told.messages
    assert (summary.status, summary.stopped_by) == ("failed", None), "the deferral did not stop it"
    assert summary.reason == "message undeliverable (error 131026)"


def test_a_deferral_without_a_queue_instant_is_told_before_the_send() -> None:
    rec = Logged("w1", state="sent", rule="R-S4", deferred_until=BERLIN_8, sent_at=BERLIN_8 + timedelta(seconds=2))
    told = story([decided("w1")], {"w1": rec})
    assert steps(told) == ["decided", "deferred", "sent"]
    assert told.lines[1].rule == "R-S4" and told.lines[1].until == BERLIN_8


def test_a_message_waiting_for_quiet_hours_is_pending_until_the_local_instant_with_the_senders_reason() -> None:
    rec = Logged("w1", state="queued", rule="R-S4", error_reason=DEFERRAL, queued_at=T0 + timedelta(seconds=1),
                 deferred_until=BERLIN_8, expires_at=T0 + timedelta(hours=12))
    told = story([decided("w1")], {"w1": rec})
    assert steps(told) == ["decided", "queued", "deferred"]
    assert (told.lines[-1].rule, told.lines[-1].reason, told.lines[-1].until) == ("R-S4", DEFERRAL, BERLIN_8)
    (summary,) = told.messages
    assert (summary.status, summary.reached, summary.pending) == ("pending", False, True)
    assert summary.until == BERLIN_8 and summary.reason == DEFERRAL
    assert summary.expires_at == T0 + timedelta(hours=12)


def test_a_fourth_promotion_is_stopped_by_the_frequency_cap_with_the_count() -> None:
    reason = "3 marketing messages in the last 7 days"
    rec = Logged("p4", state="suppressed", rule="R-S5", error_reason=reason, queued_at=T0 + timedelta(seconds=1),
                 suppressed_at=T0 + timedelta(seconds=2))
    told = story([decided("p4", flow="cart")], {"p4": rec})
    assert steps(told) == ["decided", "queued", "suppressed"]
    assert (told.lines[-1].rule, told.lines[-1].reason) == ("R-S5", reason)
    (summary,) = told.messages
    assert (summary.status, summary.reached, summary.stopped_by, summary.reason) == ("stopped", False, "R-S5", reason)


def test_a_deferral_that_reached_the_expiry_names_expired_and_not_the_old_deferrals_rule() -> None:
    rec = Logged("w1", state="suppressed", rule="EXPIRED", error_reason="expired before 08:00 local",
                 queued_at=T0, deferred_until=BERLIN_8, suppressed_at=T0 + timedelta(minutes=15))
    told = story([decided("w1")], {"w1": rec})
    deferred = next(line for line in told.lines if line.step == "deferred")
    assert deferred.rule is None and deferred.until == BERLIN_8  # the rule column now names the suppression
    assert told.messages[0].stopped_by == "EXPIRED"


def test_each_gate_rule_is_the_summarys_stopped_by() -> None:
    for rule in ("EXPIRED", "R-S7", "WINDOW", "R-S6", "META-131049", "R-T4.5", "R-T6.3", "R-S5", "R-S4",
                 "WITHDRAWN"):
        told = story([decided("k")], {"k": Logged("k", state="suppressed", rule=rule, error_reason="why",
                                                  suppressed_at=T0)})
        assert (told.messages[0].status, told.messages[0].stopped_by, told.messages[0].reason) == \
            ("stopped", rule, "why"), rule


def test_a_failure_reached_nobody_and_says_why_with_its_code_once() -> None:
    rec = Logged("o1", state="failed", error_reason="message undeliverable", error_code=131026, queued_at=T0,
                 sent_at=T0 + timedelta(seconds=1))
    engine_failed = decided("o1", "failed", at=T0 + timedelta(seconds=5), flow="order_confirmation",
                            reason="message undeliverable (error 131026)", event_id="st-1")
    told = story([decided("o1", flow="order_confirmation"), engine_failed], {"o1": rec})
    assert steps(told) == ["decided", "queued", "sent", "failed"]  # the engine's failed line, not a second one
    (summary,) = told.messages
    assert (summary.status, summary.reached, summary.reason) == \
        ("failed", False, "message undeliverable (error 131026)")
    # without the engine's line the sender's own failure is told
    alone = story([decided("o1")], {"o1": rec})
    assert steps(alone)[-1] == "failed" and alone.lines[-1].source == "sender"


def test_a_withdrawn_welcome_is_stopped_by_withdrawn_and_the_withdrawal_is_a_line() -> None:
    rec = Logged("w1", state="suppressed", rule="WITHDRAWN", error_reason="withdrawn: purchased", queued_at=T0,
                 suppressed_at=T0 + timedelta(minutes=3))
    rows = [decided("w1"), decided("w1", "withdrawn", at=T0 + timedelta(minutes=2), reason="purchased",
                                   event_id="ev-2")]
    told = story(rows, {"w1": rec})
    assert steps(told) == ["decided", "queued", "withdrawn", "suppressed"]
    assert told.messages[0].stopped_by == "WITHDRAWN"


def test_a_withdrawal_that_came_too_late_leaves_the_message_reached() -> None:
    rec = Logged("w1", state="sent", queued_at=T0, sent_at=T0 + timedelta(seconds=1))
    rows = [decided("w1"), decided("w1", "withdrawn", at=T0 + timedelta(minutes=2), reason="purchased")]
    assert story(rows, {"w1": rec}).messages[0].status == "reached"


def test_a_withdrawal_after_the_sender_stopped_the_message_by_another_rule_says_it_changed_nothing() -> None:
    rec = Logged("w1", state="suppressed", rule="R-S6", error_reason="customer stopped marketing", queued_at=T0,
                 suppressed_at=T0 + timedelta(minutes=1))
    rows = [decided("w1"), decided("w1", "withdrawn", at=T0 + timedelta(minutes=2), reason="cancelled: purchased",
                                   event_id="ev-2")]
    told = story(rows, {"w1": rec})
    assert steps(told) == ["decided", "queued", "suppressed", "withdrawn"]
    assert told.lines[-1].reason == "cancelled: purchased: no effect, the message was already suppressed (R-S6)"
    assert (told.messages[0].status, told.messages[0].stopped_by) == ("stopped", "R-S6")


def test_engine_decisions_without_a_send_are_stopped_or_pending_by_their_latest_outcome() -> None:
    rows = [decided("a", "suppressed", reason="flow disabled"),
            decided("b", "expired", reason="expired: contact was created more than 0:15:00 ago"),
            decided("c", "scheduled", reason="due at 2026-12-01T22:00:00Z"),
            decided("d", "scheduled", reason="due at …", event_id="ev-9", flow="cart"),
            decided("d", "cancelled", at=T0 + timedelta(minutes=1), reason="cancelled: purchased", flow="cart")]
    by_key = {m.idempotency_key: m for m in story(rows, {}).messages}
    assert (by_key["a"].status, by_key["a"].stopped_by, by_key["a"].reason) == ("stopped", None, "flow disabled")
    assert (by_key["b"].status, by_key["b"].stopped_by) == ("stopped", "EXPIRED")
    assert (by_key["c"].status, by_key["c"].pending, by_key["c"].reason) == ("pending", True,
                                                                             "due at 2026-12-01T22:00:00Z")
    assert (by_key["d"].status, by_key["d"].reason, by_key["d"].last_step) == \
        ("stopped", "cancelled: purchased", "cancelled")
    assert next(line for line in story(rows, {}).lines if line.idempotency_key == "b").rule == "EXPIRED"


def test_a_timer_that_fired_under_another_key_has_no_summary_of_its_own() -> None:
    rows = [decided("timer:w1", "scheduled", reason="due at …"),
            decided("w1", at=T0 + timedelta(minutes=30))]  # the same event and flow, later, another key
    told = story(rows, {"w1": Logged("w1", state="sent", sent_at=T0 + timedelta(minutes=31))})
    assert [m.idempotency_key for m in told.messages] == ["w1"]
    assert steps(told) == ["scheduled", "decided", "sent"]


def test_a_key_the_sender_does_not_know_yet_is_pending_and_an_unasked_log_is_unknown() -> None:
    pending = story([decided("w1")], {}).messages[0]
    assert (pending.status, pending.reached, pending.pending) == ("pending", False, True)
    unknown = story([decided("w1")], None).messages[0]
    assert (unknown.status, unknown.reached, unknown.pending) == ("unknown", None, False)
    # the engine's own failure line still tells a failure without the send log
    failed = story([decided("w1"), decided("w1", "failed", reason="paused", at=T0 + timedelta(seconds=1))], None)
    assert (failed.messages[0].status, failed.messages[0].reason) == ("failed", "paused")
    # an engine-only decision needs no send log
    assert story([decided("x", "suppressed", reason="no phone")], None).messages[0].status == "stopped"


def test_a_record_missing_the_gates_fields_is_read_from_what_it_has() -> None:
    queued = story([decided("k")], {"k": Logged("k", state="queued", queued_at=T0)}).messages[0]
    assert (queued.status, queued.until, queued.stopped_by) == ("pending", None, None)
    no_state = story([decided("k")], {"k": Logged("k", sent_at=T0 + timedelta(seconds=1))}).messages[0]
    assert no_state.status == "reached"
    bare = story([decided("k")], {"k": Logged("k")})
    assert bare.messages[0].status == "unknown" and steps(bare) == ["decided"]
    odd = story([decided("k")], {"k": Logged("k", state="teleported", queued_at=T0)}).messages[0]
    assert odd.status == "unknown" and "teleported" in (odd.reason or "")
    held = story([decided("k")], {"k": Logged("k", state="queued", held_by="pair_limit", queued_at=T0)})
    assert held.messages[0].reason == "pair_limit" and held.lines[-1].reason == "pair_limit"


def test_lines_of_several_messages_interleave_by_time_each_message_in_its_own_order() -> None:
    later = T0 + timedelta(minutes=10)
    rows = [decided("b", at=later, flow="order_confirmation", event_id="ev-2"), decided("a"),
            decided(None, "dead_lettered", at=T0 + timedelta(minutes=5), flow="-", reason="segmenter gave up")]
    logged = {"a": Logged("a", state="sent", queued_at=T0, sent_at=T0 + timedelta(minutes=20)),
              "b": Logged("b", state="sent", queued_at=later, sent_at=later + timedelta(seconds=1))}
    told = story(rows, logged)
    assert [(line.idempotency_key, line.step) for line in told.lines] == [
        ("a", "decided"), ("a", "queued"), (None, "dead_lettered"), ("b", "decided"), ("b", "queued"),
        ("b", "sent"), ("a", "sent")]
    assert [m.idempotency_key for m in told.messages] == ["a", "b"]  # oldest decided first
    assert all(told.lines[i].at <= told.lines[i + 1].at for i in range(len(told.lines) - 1))


def test_a_sender_clock_slightly_behind_never_puts_a_step_before_its_decision() -> None:
    rec = Logged("w1", state="sent", queued_at=T0 - timedelta(milliseconds=300),
                 sent_at=T0 - timedelta(milliseconds=100))
    assert steps(story([decided("w1")], {"w1": rec})) == ["decided", "queued", "sent"]


def test_a_duplicate_decision_keeps_the_messages_summary() -> None:
    rows = [decided("o1", flow="order_confirmation"),
            decided("o1", "suppressed", at=T0 + timedelta(minutes=1), flow="order_confirmation",
                    reason="duplicate: a message was already decided for this key", event_id="ev-2")]
    told = story(rows, {"o1": Logged("o1", state="sent", sent_at=T0 + timedelta(seconds=2))})
    assert told.messages[0].status == "reached" and len(told.messages) == 1


def test_failure_text_adds_the_code_once() -> None:
    assert failure_text("undeliverable", 131026) == "undeliverable (error 131026)"
    assert failure_text("undeliverable (error 131026)", 131026) == "undeliverable (error 131026)"
    assert failure_text(None, None) == "failed without a reason given"


def test_decisions_of_one_instant_keep_the_order_they_were_recorded_in() -> None:
    rows = [decided("first", event_id="ev-1"), decided("second", flow="order_confirmation", event_id="ev-2")]
    told = story(rows, {})
    assert [line.idempotency_key for line in told.lines] == ["first", "second"]
    assert [m.idempotency_key for m in told.messages] == ["first", "second"]


def test_a_receipt_stamped_in_whole_seconds_never_shows_before_the_send_it_follows() -> None:
    sent = BERLIN_8 + timedelta(seconds=10, milliseconds=416)
    rec = Logged("w1", state="sent", queued_at=T0 + timedelta(seconds=1), sent_at=sent,
                 delivered_at=BERLIN_8 + timedelta(seconds=10), read_at=BERLIN_8 + timedelta(seconds=10))
    told = story([decided("w1")], {"w1": rec})
    assert steps(told, "w1") == ["decided", "queued", "sent", "delivered", "read"]
    times = [line.at for line in told.lines if line.idempotency_key == "w1"]
    assert times == sorted(times)


def test_an_engine_suppression_whose_reason_names_a_rule_is_stopped_by_that_rule() -> None:
    rows = [decided("pd-1", "suppressed", flow="price_drop",
                    reason="R-T6.2: 2 price-drop messages for SKU X in the last 7 days")]
    told = story(rows, {})
    assert (told.messages[0].status, told.messages[0].stopped_by) == ("stopped", "R-T6.2")
    assert told.lines[0].rule == "R-T6.2"
    plain = story([decided("w-1", "suppressed", reason="contact has not opted in to marketing")], {})
    assert plain.messages[0].stopped_by is None and plain.lines[0].rule is None
