"""Sender adapters: Cloud API client, PostgreSQL send log, Kafka consumers and relay, HTTP routes."""
