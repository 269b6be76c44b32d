"""Shared contracts and plumbing of scrm services: schemas, Kafka loop, database, observability.

Only what two or more services genuinely share lives here; no business rule does.
"""
