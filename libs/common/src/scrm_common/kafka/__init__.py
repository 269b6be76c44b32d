"""Kafka plumbing: producer set-up, topic creation, and the batch consume loop with dead letters."""

from scrm_common.kafka.consumer import BatchConsumer, ConsumerMetrics, batch_consumer, make_consumer
from scrm_common.kafka.producer import ensure_topics, make_producer

__all__ = ["BatchConsumer", "ConsumerMetrics", "batch_consumer", "ensure_topics", "make_consumer", "make_producer"]
