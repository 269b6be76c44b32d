"""The sender's pure core: templates and variables, per-account pacing, provider-error policy."""
