"""The live view of `make run`: what flows, scraped from each process's /metrics and /readyz."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import httpx

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eE]+|NaN|\+Inf)$")


def metric_sums(text: str) -> dict[str, float]:
    """Sum of every sample per metric name (labels folded), plus `name{labels}` entries."""
    sums: dict[str, float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line.strip())
        if not m:
            continue
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        try:
            v = float(value)
        except ValueError:
            continue
        sums[name] = sums.get(name, 0.0) + v
        if labels:
            sums[name + labels] = v
    return sums


@dataclass
class Snapshot:
    at: float
    health: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    sim: dict[str, object] = field(default_factory=dict)

    def m(self, proc: str, name: str) -> float:
        return self.metrics.get(proc, {}).get(name, 0.0)


def take_snapshot(client: httpx.Client, ports: dict[str, int], alive: dict[str, bool]) -> Snapshot:
    snap = Snapshot(at=time.monotonic())
    for name, port in ports.items():
        if not alive.get(name, False):
            snap.health[name] = "dead"
            continue
        try:
            ready = client.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
            snap.health[name] = "ready" if ready else "starting"
            snap.metrics[name] = metric_sums(client.get(f"http://127.0.0.1:{port}/metrics").text)
        except httpx.HTTPError:
            snap.health[name] = "starting"
    if "simulator" in ports and alive.get("simulator"):
        try:
            snap.sim = client.get(f"http://127.0.0.1:{ports['simulator']}/_sim/stats").json()
        except (httpx.HTTPError, ValueError):
            pass
    return snap


_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

# What the counts of the view are made of (metric names in services/*/src and libs/common).
SUPPRESSED_DECISIONS = ("suppressed", "expired", "cancelled", "withdrawn")  # trigger-engine: decided not to send
HELD_SENDS = ("held", "retry", "late_retry")  # sender outcomes: not sent yet (restriction, error hold, retry)
FAILED_SENDS = ("failed", "refused")


def labelled(metrics: dict[str, float], name: str, label: str, values: tuple[str, ...]) -> float:
    """Sum of the samples of `name` whose `label` is one of `values`."""
    total = 0.0
    for key, value in metrics.items():
        if key.startswith(name + "{") and dict(_LABEL.findall(key)).get(label) in values:
            total += value
    return total


def summary(prev: Snapshot | None, now: Snapshot) -> dict[str, str]:
    """The figures the view shows: flow rates and totals, what is queued, deferred, failed, dead-lettered."""
    def rate(proc: str, name: str) -> float:
        if prev is None or now.at <= prev.at:
            return 0.0
        return max(0.0, (now.m(proc, name) - prev.m(proc, name)) / (now.at - prev.at))

    every = [(k, v) for p in now.metrics.values() for k, v in p.items() if "{" not in k]
    lag = sum(v for k, v in every if k.endswith("_consumer_lag_records"))
    outbox = sum(v for k, v in every if k.endswith("_outbox_batch_records"))
    dead = sum(v for k, v in every if k.endswith("_dead_letters_total"))
    sender = now.metrics.get("sender", {})
    sent = labelled(sender, "scrm_sender_messages_total", "outcome", ("sent",))
    held = labelled(sender, "scrm_sender_messages_total", "outcome", HELD_SENDS)
    # The send gate: deferrals (quiet hours, 131049) and suppressions (caps, opt-out, expiry, withdrawals …), plus
    # the queued marketing a STOP word suppressed at once.
    deferred = labelled(sender, "scrm_sender_gate_total", "verdict", ("deferred",))
    suppressed = (labelled(now.metrics.get("trigger-engine", {}), "scrm_trigger_engine_decisions_total", "outcome",
                           SUPPRESSED_DECISIONS)
                  + labelled(sender, "scrm_sender_gate_total", "verdict", ("suppressed",))
                  + sender.get("scrm_sender_opt_out_suppressed_total", 0.0))
    failed = labelled(sender, "scrm_sender_messages_total", "outcome", FAILED_SENDS)
    webhooks = now.metrics.get("ingest", {})
    statuses = webhooks.get('scrm_ingest_webhook_events_total{type="message.status"}', 0.0)
    inbound = webhooks.get('scrm_ingest_webhook_events_total{type="message.inbound"}', 0.0)
    return {
        "events/s in": f"{rate('ingest', 'scrm_ingest_events_total'):.1f}",
        "events accepted": f"{now.m('ingest', 'scrm_ingest_events_total'):.0f}",
        "decisions": f"{now.m('trigger-engine', 'scrm_trigger_engine_decisions_total'):.0f}",
        "messages sent": f"{sent:.0f}",
        "queued (consumer lag + outbox)": f"{lag + outbox:.0f}",
        "held/retrying": f"{held:.0f}",
        "deferred by the send gate": f"{deferred:.0f}",
        "suppressed (decided or gated)": f"{suppressed:.0f}",
        "failed": f"{failed:.0f}",
        "dead-lettered": f"{dead:.0f}",
        "status receipts (delivered/read)": f"{statuses:.0f}",
        "inbound chats": f"{inbound:.0f}",
        "simulator accepted": str(now.sim.get("accepted", "-")),
    }
