"""Trigger-engine adapters: PostgreSQL repository, Kafka outbox relay, HTTP routes."""
