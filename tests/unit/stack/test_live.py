"""The live view's counts come from the services' /metrics."""

from __future__ import annotations

from scrm_stack.live import Snapshot, metric_sums, summary

SENDER = """
scrm_sender_messages_total{outcome="sent",category="transactional"} 7.0
scrm_sender_messages_total{outcome="failed",category="transactional"} 2.0
scrm_sender_messages_total{outcome="refused",category="marketing"} 1.0
scrm_sender_messages_total{outcome="held",category="marketing"} 3.0
scrm_sender_messages_total{outcome="retry",category="marketing"} 1.0
scrm_sender_messages_created{outcome="sent",category="transactional"} 1.7e9
scrm_sender_consumer_lag_records{topic="scrm.send-commands.v1"} 4.0
scrm_sender_outbox_batch_records 2.0
scrm_sender_dead_letters_total{topic="scrm.send-commands.v1"} 1.0
scrm_sender_gate_total{verdict="dispatch",rule=""} 7.0
scrm_sender_gate_total{verdict="deferred",rule="R-S4"} 4.0
scrm_sender_gate_total{verdict="suppressed",rule="R-S5"} 2.0
scrm_sender_gate_total{verdict="suppressed",rule="EXPIRED"} 1.0
scrm_sender_opt_out_suppressed_total 2.0
"""
ENGINE = """
scrm_trigger_engine_decisions_total{flow="order_confirmation",outcome="send"} 9.0
scrm_trigger_engine_decisions_total{flow="welcome",outcome="suppressed"} 2.0
scrm_trigger_engine_decisions_total{flow="abandoned_cart",outcome="expired"} 1.0
scrm_trigger_engine_consumer_lag_records{topic="scrm.events.v1"} 5.0
scrm_trigger_engine_dead_letters_total{topic="scrm.events.v1"} 3.0
"""


def test_queued_deferred_failed_and_dead_lettered_are_summed_from_metrics() -> None:
    snap = Snapshot(at=1.0, metrics={"sender": metric_sums(SENDER), "trigger-engine": metric_sums(ENGINE)})
    figures = summary(None, snap)
    assert figures["messages sent"] == "7"
    assert figures["queued (consumer lag + outbox)"] == "11"  # 4 + 5 lag, 2 outbox rows
    assert figures["held/retrying"] == "4"  # 3 held + 1 retry sends
    assert figures["deferred by the send gate"] == "4"
    assert figures["suppressed (decided or gated)"] == "8"  # 2 suppressed + 1 expired decisions, 3 gated, 2 by STOP
    assert figures["failed"] == "3"  # 2 failed + 1 refused
    assert figures["dead-lettered"] == "4"
    assert figures["decisions"] == "12"
