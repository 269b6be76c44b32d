"""R-T3 shipment updates: one short utility message per status step, never a step back.

(Skeleton: the issue-9 implementation replaces the bodies.)"""

from __future__ import annotations

from datetime import datetime

from scrm_common.contracts.events import Event, ShipmentUpdated
from trigger_engine.domain.decisions import Decision
from trigger_engine.domain.model import ContactProfile, EngineConfig
from trigger_engine.domain.settings import FlowSettings

FLOW = "shipment_update"


class ShipmentSettings(FlowSettings):
    """R-T3 (skeleton)."""


def evolve_shipments(profile: ContactProfile, event: Event) -> ContactProfile:
    """The person's shipments after `event` (memory slot `shipments`)."""
    return profile


def decide_shipment(profile: ContactProfile, event: ShipmentUpdated, now: datetime, config: EngineConfig
                    ) -> tuple[Decision, ...]:
    """A status step forward → one message."""
    return ()
