"""Issue 9: the commerce templates exist in en_US and de, approved, with the category and the number of body
parameters the flows produce (R-T6, R-T6.2, R-T6.6, R-T3, R-T2.5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sender.domain.templates import Template

CATALOG = Path(__file__).resolve().parents[3] / "services/sender/src/sender/catalog/default_templates.json"

# name -> (category, body parameter count), the table of the brief
EXPECTED = {
    "cart_reminder_1": ("marketing", 5),
    "cart_reminder_2": ("marketing", 5),
    "cart_reminder_3": ("marketing", 5),
    "cart_final_baby": ("marketing", 5),
    "cart_final_electronics": ("marketing", 5),
    "cart_final_apparel": ("marketing", 5),
    "cart_final_beauty": ("marketing", 5),
    "price_drop": ("marketing", 4),
    "shipment_update": ("utility", 4),
    "order_security_notice": ("utility", 3),
}


def _entries() -> dict[tuple[str, str], dict[str, str]]:
    return {(e["name"], e["language"]): e for e in json.loads(CATALOG.read_text())}


@pytest.mark.parametrize("language", ["en_US", "de"])
@pytest.mark.parametrize(("name", "expected"), sorted(EXPECTED.items()))
def test_commerce_template_exists_with_its_category_and_parameter_count(name, expected, language):
    entry = _entries().get((name, language))
    assert entry is not None, f"{name}/{language} missing"
    template = Template(entry["name"], entry["language"], entry["category"], entry["body"], entry["status"])
    assert (template.category, template.variable_count, template.status) == (*expected, "APPROVED")


def test_simulator_serves_the_commerce_templates_approved():
    from whatsapp_sim.config import SimulatorSettings
    from whatsapp_sim.domain.templates import TemplateCatalog

    catalog = TemplateCatalog.from_json(SimulatorSettings().templates_source().read_text())
    for name, (category, count) in EXPECTED.items():
        for language in ("en_US", "de"):
            template = catalog.get(name, language)
            assert template is not None and template.status == "APPROVED"
            assert (template.category, len(template.body_params)) == (category, count)
