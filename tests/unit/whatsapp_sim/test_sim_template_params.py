"""Template parameters Meta refuses (CLOUD-API.md §2.4): the simulator answers with Meta's error."""

from __future__ import annotations

import json
from typing import Any

import pytest

from whatsapp_sim.domain.errors import MetaError
from whatsapp_sim.domain.templates import TemplateCatalog
from whatsapp_sim.domain.validation import AcceptedMessage, validate_request

BODY = "Bestellung {{1}}: {{2}} ist unterwegs."
CATALOG = TemplateCatalog.from_json(json.dumps([
    {"name": "order_update", "language": "de", "category": "utility", "status": "APPROVED", "body": BODY}]))
FRAME = len(BODY) - len("{{1}}{{2}}")
PARAM_TEXT = "Param text cannot have new-line/tab characters or more than 4 consecutive spaces"


def _send(order: str, product: str) -> AcceptedMessage | Any:
    body = {"messaging_product": "whatsapp", "to": "+4915112345678", "type": "template", "template": {
        "name": "order_update", "language": {"code": "de"}, "components": [{"type": "body", "parameters": [
            {"type": "text", "text": order}, {"type": "text", "text": product}]}]}}
    return validate_request(body, CATALOG)


@pytest.mark.parametrize(("product", "code"), [
    ("Sneaker\nRot, Größe 42", 132018),
    ("Sneaker\r\nRot", 132018),
    ("Sneaker\rRot", 132018),
    ("Sneaker\tRot", 132018),
    ("Sneaker     Rot", 132018),  # five spaces
    ("Sneaker          Rot", 132018),
    ("\nRot", 132018),
    ("Sneaker    Rot", None),  # four spaces are allowed
    ("Sneaker · Rot · 42 🏃", None),
    ("x" * (1024 - FRAME - 2), None),  # the filled body is exactly 1024 characters
    ("x" * (1024 - FRAME - 1), 132005),  # one over
    ("x" * 3000, 132005),
])
def test_parameter_text_rules(product: str, code: int | None) -> None:
    result = _send("A1", product)
    if code is None:
        assert isinstance(result, AcceptedMessage), result
        return
    assert isinstance(result, MetaError) and result.code == code


def test_the_132018_error_is_metas() -> None:
    result = _send("A1", "Sneaker\nRot")
    assert isinstance(result, MetaError)
    assert result.http_status == 400
    body = result.body("Az8or2yhqkZfEZ")["error"]
    assert body["message"] == "(#132018) There was an issue with the parameters in your template."
    assert body["code"] == 132018 and body["type"] == "OAuthException"
    assert body["error_data"] == {"messaging_product": "whatsapp", "details": PARAM_TEXT}


def test_the_132005_error_names_the_length() -> None:
    result = _send("A1", "x" * 1100)
    assert isinstance(result, MetaError) and result.http_status == 400
    assert result.message == "(#132005) Translated text too long"
    assert str(FRAME + 2 + 1100) in result.details and "1024" in result.details
