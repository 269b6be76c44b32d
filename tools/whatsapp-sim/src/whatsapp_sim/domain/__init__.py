"""Pure Cloud API rules: validation, templates, limits, windows and outcomes (no I/O)."""
