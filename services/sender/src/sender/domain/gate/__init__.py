"""The send gate's pure rules (R-S4 quiet hours, R-S5 caps, opt-out, fatigue, the 24 h window).

Shape: one function per rule. Each takes the small frozen inputs it needs plus ``now`` and
returns ``None`` when it has no objection, or a verdict:

* ``Defer(until, rule)`` — not now; the message may go at ``until`` (UTC, aware).
* ``Suppress(rule, reason)`` — never; the message is dropped, ``reason`` says why in words.

``Verdict`` is the union of the two (see ``gate.verdicts``). The rules do no I/O and read no
clock; whoever wires them in decides the order and how verdicts combine.
"""
