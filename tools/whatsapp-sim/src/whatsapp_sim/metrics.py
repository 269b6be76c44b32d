"""Prometheus instruments of the simulator (`scrm_simulator_*`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from scrm_common.observability.metrics import LATENCY_BUCKETS


class SimMetrics:
    """Counters for sends, rejections, inbound traffic and webhook delivery."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.accepted = Counter("scrm_simulator_messages_accepted_total", "Sends accepted (HTTP 200)",
                                ["type"], registry=registry)
        self.rejected = Counter("scrm_simulator_messages_rejected_total", "Sends rejected synchronously",
                                ["code"], registry=registry)
        self.read_receipts = Counter("scrm_simulator_read_receipts_total", "Mark-as-read requests accepted",
                                     registry=registry)
        self.inbound = Counter("scrm_simulator_inbound_messages_total", "Customer messages injected",
                               registry=registry)
        self.statuses = Counter("scrm_simulator_statuses_total", "Status updates emitted", ["status"],
                                registry=registry)
        self.webhook_posts = Counter("scrm_simulator_webhook_posts_total", "Webhook POST attempts by outcome",
                                     ["outcome"], registry=registry)
        self.webhooks_delivered = Counter("scrm_simulator_webhook_events_delivered_total",
                                          "Webhook events acknowledged with 2xx", registry=registry)
        self.webhooks_failed = Counter("scrm_simulator_webhook_events_failed_total",
                                       "Webhook events given up after the last retry", registry=registry)
        self.webhooks_pending = Gauge("scrm_simulator_webhook_events_pending",
                                      "Webhook events scheduled, queued, in flight or awaiting retry",
                                      registry=registry)
        self.webhook_latency = Histogram("scrm_simulator_webhook_post_seconds", "Webhook POST duration",
                                         buckets=LATENCY_BUCKETS, registry=registry)
        self.link_clicks = Counter("scrm_simulator_link_clicks_total",
                                   "Simulated customers' link clicks: planned, then redirected (3xx), answered "
                                   "(any other status) or failed (no answer)", ["outcome"], registry=registry)
