"""scrm_stack package."""
