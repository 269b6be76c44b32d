"""Reporting's edges: PostgreSQL repository and FastAPI routes."""
