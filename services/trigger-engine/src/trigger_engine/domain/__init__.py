"""The trigger-engine's pure core: contact profiles, flows and their decisions. No I/O, no clock."""

from trigger_engine.domain.decide import decide, evolve
from trigger_engine.domain.decisions import Decision, Send, Suppress
from trigger_engine.domain.model import ContactProfile, EngineConfig

__all__ = ["ContactProfile", "Decision", "EngineConfig", "Send", "Suppress", "decide", "evolve"]
