"""scrm_bench package."""
