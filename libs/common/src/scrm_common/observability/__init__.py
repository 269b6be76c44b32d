"""Observability set-up: JSON logs and Prometheus metrics."""
