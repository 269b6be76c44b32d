"""The `scrm` command line: administration of a running installation over its HTTP APIs."""
