"""Ingest adapters: PostgreSQL directory of tenants and keys, Kafka publisher, HTTP routes."""
