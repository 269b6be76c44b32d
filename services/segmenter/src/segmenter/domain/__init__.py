"""The segmenter's pure core: contact features folded from events, activity and value tiers, tags.

Nothing here does I/O or reads the clock; time is an argument.
"""
