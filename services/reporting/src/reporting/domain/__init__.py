"""Reporting's pure core: message facts, what each contributes to which day and flow, the overview.

Nothing here does I/O or reads the clock; time is an argument.
"""
