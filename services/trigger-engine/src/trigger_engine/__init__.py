"""trigger_engine package."""
