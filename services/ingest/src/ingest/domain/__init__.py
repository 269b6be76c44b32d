"""Ingest's pure rules: batch validation, ingest rate limits, webhook translation."""
