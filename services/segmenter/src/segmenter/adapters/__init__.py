"""The segmenter's edges: PostgreSQL repository and FastAPI routes."""
