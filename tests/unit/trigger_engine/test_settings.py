"""Flow and tenant settings as typed models: the SPEC's defaults, its ranges, unknown keys refused, merge
patches, and decisions that follow a tenant's non-default settings."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from trigger_engine.domain.copy import url_with
from trigger_engine.domain.decide import decide
from trigger_engine.domain.decisions import Send, Suppress
from trigger_engine.domain.flows import FLOWS, engine_config
from trigger_engine.domain.order_confirmation import OrderConfirmationSettings
from trigger_engine.domain.settings import (
    BusinessHours,
    FlowSettings,
    TenantSettings,
    changed_from,
    field_faults,
    merge_patch,
    with_changes,
)
from trigger_engine.domain.welcome import WelcomeSettings

from .factories import T0, TENANT, config, contact_created, payment, profile

# --- defaults: SPEC.md's numbers ------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "field", "default"), [
    (WelcomeSettings, "enabled", True),
    (WelcomeSettings, "account_id", None),
    (WelcomeSettings, "discount_percent", 10),  # R-T1.2
    (WelcomeSettings, "code_valid_days", 7),  # R-T1.3
    (WelcomeSettings, "expire_after_minutes", 15),  # R-T1.1
    (WelcomeSettings, "templates", {"en_US": "welcome", "de": "welcome"}),
    (WelcomeSettings, "generic_templates", {"en_US": "welcome_generic", "de": "welcome_generic"}),  # R-T1.4
    (OrderConfirmationSettings, "enabled", True),
    (OrderConfirmationSettings, "max_items", 3),  # R-T2.2
    (OrderConfirmationSettings, "max_body_chars", 210),  # R-T2.2
    (OrderConfirmationSettings, "base_days_home", 1),  # R-T2.3: 1 / 3 / 5
    (OrderConfirmationSettings, "base_days_near", 3),
    (OrderConfirmationSettings, "base_days_far", 5),
    (OrderConfirmationSettings, "buffer_days", 2),  # R-T2.3
    (OrderConfirmationSettings, "expire_after_minutes", 24 * 60),
    (OrderConfirmationSettings, "templates", {"en_US": "order_confirmation", "de": "order_confirmation"}),
    (TenantSettings, "time_zone", "Europe/Berlin"),
    (TenantSettings, "default_language", "en_US"),
    (TenantSettings, "home_region", "DE"),
    (TenantSettings, "tracking_url", "https://shop.example/t/{order_id}"),
    (TenantSettings, "default_account_id", None),
    (TenantSettings, "business_hours", BusinessHours(start="08:00", end="22:00", days=[1, 2, 3, 4, 5, 6, 7])),  # R-A8
])
def test_defaults_are_the_specs(model: type, field: str, default: Any) -> None:
    assert getattr(model(), field) == default


def test_every_flow_has_the_common_settings_and_is_registered() -> None:
    assert set(FLOWS) == {"welcome", "order_confirmation", "anti_fraud_notice", "shipment_update", "abandoned_cart",
                          "price_drop"}
    for kind in FLOWS.values():
        assert issubclass(kind, FlowSettings)
        assert {"enabled", "account_id", "templates"} <= set(kind.model_fields)
        assert kind().templates, "a flow sends something by default"


# --- ranges and unknown keys: one fault per field -------------------------------------------------------


@pytest.mark.parametrize(("model", "body", "fields"), [
    (WelcomeSettings, {"discount_percent": 0}, {"body.discount_percent"}),
    (WelcomeSettings, {"discount_percent": 91}, {"body.discount_percent"}),
    (WelcomeSettings, {"code_valid_days": 0}, {"body.code_valid_days"}),
    (WelcomeSettings, {"expire_after_minutes": -5}, {"body.expire_after_minutes"}),
    (WelcomeSettings, {"code_prefix": "welcome!"}, {"body.code_prefix"}),
    (WelcomeSettings, {"enabled": "maybe"}, {"body.enabled"}),
    (WelcomeSettings, {"no_such_setting": 1}, {"body.no_such_setting"}),
    (WelcomeSettings, {"templates": {"de": "Welcome Template"}}, {"body.templates.de"}),
    (WelcomeSettings, {"templates": {"German": "welcome"}}, {"body.templates.German.[key]"}),
    (WelcomeSettings, {"templates": {}}, {"body.templates"}),
    (WelcomeSettings, {"templates": {"fr": "bienvenue"}}, {"body"}),  # no generic template for fr (R-T1.4)
    (OrderConfirmationSettings, {"max_items": 0}, {"body.max_items"}),
    (OrderConfirmationSettings, {"max_items": 11}, {"body.max_items"}),
    (OrderConfirmationSettings, {"buffer_days": -1, "base_days_far": -1}, {"body.buffer_days", "body.base_days_far"}),
    (OrderConfirmationSettings, {"base_days_home": 1.5}, {"body.base_days_home"}),
    (OrderConfirmationSettings, {"near_regions": ["FR", "XX1"]}, {"body.near_regions.1"}),
    (OrderConfirmationSettings, {"account_id": ""}, {"body.account_id"}),
    (TenantSettings, {"time_zone": "Europe/Atlantis"}, {"body.time_zone"}),
    (TenantSettings, {"time_zone": "Europe"}, {"body.time_zone"}),  # tzdata directories: IsADirectoryError
    (TenantSettings, {"time_zone": "America/Argentina"}, {"body.time_zone"}),
    (TenantSettings, {"time_zone": "zone.tab"}, {"body.time_zone"}),  # a tzdata file that is no zone
    (TenantSettings, {"home_region": "QQ"}, {"body.home_region"}),
    (TenantSettings, {"tracking_url": "ftp://shop.example/{order_id}"}, {"body.tracking_url"}),
    (TenantSettings, {"tracking_url": "https://shop.example/{order}"}, {"body.tracking_url"}),
    (TenantSettings, {"tracking_url": "https://shop.example/{order_id"}, {"body.tracking_url"}),
    (TenantSettings, {"support_url": "https://shop.example/help/{order_id}"}, {"body.support_url"}),
    # Format specs and conversions would be `str.format`ted: a ValueError or a GiB-wide string per payment.
    (TenantSettings, {"tracking_url": "https://shop.example/{order_id:d}"}, {"body.tracking_url"}),
    (TenantSettings, {"tracking_url": "https://shop.example/{order_id!r}"}, {"body.tracking_url"}),
    (TenantSettings, {"tracking_url": "https://shop.example/{order_id:>999999999}"}, {"body.tracking_url"}),
    (TenantSettings, {"tracking_url": "https://shop.example/{order_id:{order_id}}"}, {"body.tracking_url"}),
    (TenantSettings, {"tracking_url": "https://shop.example/{order_id.__class__}"}, {"body.tracking_url"}),
    (TenantSettings, {"tracking_url": "https://shop.example/{order_id[0]}"}, {"body.tracking_url"}),
    (TenantSettings, {"tracking_url": "https://shop.example/{0}"}, {"body.tracking_url"}),
    # Rendered, a URL is a template parameter (≤ 1024 characters) with the longest order number in it.
    (TenantSettings, {"tracking_url": "https://shop.example/" + "a" * 640 + "{order_id}"}, {"body.tracking_url"}),
    (TenantSettings, {"tracking_url": "https://shop.example/" + "{order_id}" * 3}, {"body.tracking_url"}),
    (TenantSettings, {"support_url": "https://shop.example/" + "a" * 1004}, {"body.support_url"}),
    (TenantSettings, {"business_hours": {"start": "24:00"}}, {"body.business_hours.start"}),
    (TenantSettings, {"business_hours": {"start": "18:00", "end": "09:00"}}, {"body.business_hours"}),
    (TenantSettings, {"business_hours": {"days": [0, 8]}}, {"body.business_hours.days.0", "body.business_hours.days.1"}),
    (TenantSettings, {"default_language": "German"}, {"body.default_language"}),
    # A wrong JSON type is a fault, never coerced (docs: wrong type → 422).
    (WelcomeSettings, {"enabled": "yes"}, {"body.enabled"}),
    (WelcomeSettings, {"enabled": 1}, {"body.enabled"}),
    (WelcomeSettings, {"discount_percent": True}, {"body.discount_percent"}),
    (OrderConfirmationSettings, {"max_items": "5"}, {"body.max_items"}),
    (OrderConfirmationSettings, {"max_items": 5.0}, {"body.max_items"}),
    (OrderConfirmationSettings, {"max_items": 1e308}, {"body.max_items"}),
    (TenantSettings, {"home_region": 5}, {"body.home_region"}),
    (TenantSettings, {"business_hours": {"days": ["1"]}}, {"body.business_hours.days.0"}),
])
def test_out_of_range_and_unknown_settings_are_refused_one_fault_per_field(model: type, body: dict[str, Any],
                                                                           fields: set[str]) -> None:
    with pytest.raises(ValidationError) as refused:
        model.model_validate(body)
    assert {field for field, _ in field_faults(refused.value)} == fields


def test_an_unknown_key_is_called_unknown_and_a_rule_speaks_its_own_words() -> None:
    with pytest.raises(ValidationError) as refused:
        TenantSettings.model_validate({"colour": "blue", "time_zone": "Mars/Olympus"})
    assert dict(field_faults(refused.value)) == {
        "body.colour": "unknown setting",
        "body.time_zone": "'Mars/Olympus' is not an IANA time zone (such as Europe/Berlin)"}


@pytest.mark.parametrize(("model", "body"), [
    (WelcomeSettings, {"discount_percent": 1, "code_valid_days": 1, "expire_after_minutes": 1}),
    (WelcomeSettings, {"discount_percent": 90, "code_prefix": "HELLO2026"}),
    (OrderConfirmationSettings, {"max_items": 1, "base_days_home": 0, "buffer_days": 0}),
    (OrderConfirmationSettings, {"max_items": 10, "near_regions": ["fr", "EU"]}),
    (TenantSettings, {"time_zone": "America/Sao_Paulo", "home_region": "br", "default_language": "pt_BR",
                      "tracking_url": "https://track.example/?o={order_id}&x={{literal}}",
                      "business_hours": {"start": "09:00", "end": "18:00", "days": [1, 2, 3, 4, 5]}}),
])
def test_values_at_the_edges_of_their_ranges_are_accepted(model: type, body: dict[str, Any]) -> None:
    model.model_validate(body)


@pytest.mark.parametrize(("url", "reason"), [
    ("https://x.example/{order_id:d}", "has {order_id:d}; write {order_id}: format specs and conversions are not "
                                       "allowed"),
    ("https://x.example/{order_id!r}", "has {order_id!r}; write {order_id}: format specs and conversions are not "
                                       "allowed"),
    ("https://x.example/" + "{order_id}" * 3, "is too long: with every {order_id} replaced by the longest order "
                                              "number (128 characters, URL-encoded) it is 1170 characters; at most 1024"),
])
def test_a_refused_tracking_url_says_why(url: str, reason: str) -> None:
    with pytest.raises(ValidationError) as refused:
        TenantSettings(tracking_url=url)
    assert dict(field_faults(refused.value)) == {"body.tracking_url": reason}


def test_the_longest_accepted_tracking_url_renders_within_a_template_parameter() -> None:
    url = "https://shop.example/" + "a" * (1024 - 384 - len("https://shop.example/")) + "{order_id}"
    rendered = url_with(TenantSettings(tracking_url=url).tracking_url, order_id="/" * 128)
    assert len(rendered) == 1024


def test_a_stored_tracking_url_the_engine_can_no_longer_render_falls_back_to_the_default() -> None:
    defaults = TenantSettings(tracking_url="https://install.example/t/{order_id}")
    settings, dropped = with_changes(TenantSettings, defaults, {"tracking_url": "https://x.example/{order_id:d}",
                                                                "home_region": "FR"})
    assert (settings.tracking_url, settings.home_region, dropped) == (defaults.tracking_url, "FR", ["tracking_url"])


def test_stored_settings_are_json_and_load_under_the_strict_types() -> None:
    changed = OrderConfirmationSettings(max_items=5, near_regions=["FR"], enabled=False)
    stored = json.loads(json.dumps(changed_from(changed, OrderConfirmationSettings())))
    assert with_changes(OrderConfirmationSettings, OrderConfirmationSettings(), stored) == (changed, [])
    shop = TenantSettings(business_hours=BusinessHours(start="09:00", days=[1, 2]), home_region="FR")
    loaded = TenantSettings.model_validate(json.loads(shop.model_dump_json()))
    assert loaded == shop


def test_regions_are_upper_cased() -> None:
    assert OrderConfirmationSettings(near_regions=["fr"]).near_regions == ["FR"]
    assert TenantSettings(home_region="at").home_region == "AT"


def test_settings_are_frozen() -> None:
    with pytest.raises(ValidationError):
        WelcomeSettings().discount_percent = 20  # type: ignore[misc]


# --- merge patches and what is stored ---------------------------------------------------------------------


@pytest.mark.parametrize(("target", "patch", "result"), [
    ({"a": 1, "b": 2}, {"a": 3}, {"a": 3, "b": 2}),
    ({"a": 1, "b": 2}, {"a": None}, {"b": 2}),  # null: back to the default
    ({"t": {"en_US": "x", "de": "y"}}, {"t": {"fr": "z"}}, {"t": {"en_US": "x", "de": "y", "fr": "z"}}),
    ({"t": {"en_US": "x", "de": "y"}}, {"t": {"de": None}}, {"t": {"en_US": "x"}}),
    ({"days": [1, 2, 3]}, {"days": [6]}, {"days": [6]}),  # lists are replaced
    ({"a": 1}, {}, {"a": 1}),
])
def test_merge_patch_is_rfc_7396(target: dict[str, Any], patch: dict[str, Any], result: dict[str, Any]) -> None:
    assert merge_patch(target, patch) == result


def test_stored_settings_are_what_differs_from_the_defaults() -> None:
    changed = WelcomeSettings(discount_percent=15, templates={"en_US": "welcome"})
    assert changed_from(changed, WelcomeSettings()) == {"discount_percent": 15, "templates": {"en_US": "welcome"}}
    assert changed_from(WelcomeSettings(), WelcomeSettings()) == {}


def test_a_stored_value_that_no_longer_validates_falls_back_to_its_default() -> None:
    settings, dropped = with_changes(WelcomeSettings, WelcomeSettings(),
                                     {"discount_percent": 95, "retired_setting": True, "code_valid_days": 30})
    assert (settings.discount_percent, settings.code_valid_days) == (10, 30)
    assert dropped == ["discount_percent", "retired_setting"]


def test_changes_follow_the_installations_defaults_in_what_they_do_not_change() -> None:
    defaults = TenantSettings(support_url="https://other.example/help")
    settings, dropped = with_changes(TenantSettings, defaults, {"home_region": "FR"})
    assert (settings.home_region, settings.support_url, dropped) == ("FR", "https://other.example/help", [])


# --- decisions follow the tenant's settings ---------------------------------------------------------------


@pytest.mark.parametrize(("settings", "event"), [
    (WelcomeSettings(enabled=False), contact_created(name="Anna")),
    (OrderConfirmationSettings(enabled=False), payment()),
])
def test_a_disabled_flow_decides_flow_disabled(settings: FlowSettings, event: Any) -> None:
    (decision,) = decide(profile(name="Anna"), event, T0 + timedelta(seconds=1), config(settings))
    assert isinstance(decision, Suppress)
    assert decision.reason == "flow disabled"


def test_the_send_names_the_flows_template_for_the_contacts_language() -> None:
    flow = OrderConfirmationSettings(templates={"en_US": "order_confirmed_v2", "de": "bestellung_v2"})
    (english,) = decide(profile(), payment(), T0, config(flow))
    (german,) = decide(profile(locale="de-AT"), payment(), T0, config(flow))
    assert isinstance(english, Send) and isinstance(german, Send)
    assert (english.template, english.language) == ("order_confirmed_v2", "en_US")
    assert (german.template, german.language) == ("bestellung_v2", "de")


def test_a_language_without_a_template_falls_back_to_the_tenants_default_language() -> None:
    flow = OrderConfirmationSettings(templates={"en_US": "order_confirmation", "fr": "confirmation_fr"})
    (decision,) = decide(profile(locale="de-DE"), payment(), T0,
                         config(flow, settings=TenantSettings(default_language="fr")))
    assert isinstance(decision, Send)
    assert (decision.template, decision.language) == ("confirmation_fr", "fr")


def test_a_default_language_the_flow_has_no_template_for_is_suppressed_with_the_reason() -> None:
    flow = OrderConfirmationSettings(templates={"de": "order_confirmation"})
    (decision,) = decide(profile(locale="es-ES"), payment(), T0, config(flow))
    assert isinstance(decision, Suppress)
    assert decision.reason == "no order_confirmation template for language en_US"


def test_welcome_uses_the_generic_template_of_the_language_without_a_name() -> None:
    flow = WelcomeSettings(templates={"en_US": "hello_named"}, generic_templates={"en_US": "hello_anyone"})
    named = decide(profile(name="Anna"), contact_created(), T0, config(flow))
    nameless = decide(profile(name=None), contact_created(), T0, config(flow))
    assert [d.template for d in (*named, *nameless) if isinstance(d, Send)] == ["hello_named", "hello_anyone"]


def test_the_numbers_of_the_flow_are_the_tenants() -> None:
    flow = OrderConfirmationSettings(base_days_far=8, buffer_days=0, expire_after_minutes=10)
    (decision,) = decide(profile(), payment(region="US"), T0 + timedelta(minutes=9), config(flow))
    assert isinstance(decision, Send)
    assert decision.parameters[5] == "8–8"
    (late,) = decide(profile(), payment(region="US"), T0 + timedelta(minutes=11), config(flow))
    assert isinstance(late, Suppress) and late.outcome == "expired"


def test_the_shop_urls_and_home_region_are_the_tenants() -> None:
    shop = TenantSettings(tracking_url="https://track.example/{order_id}?s=1", support_url="https://help.example",
                          home_region="FR")
    (decision,) = decide(profile(), payment(region="FR", order_id="A 1"), T0, config(settings=shop))
    assert isinstance(decision, Send)
    assert decision.parameters[5:] == ("1–3", "https://track.example/A%201?s=1", "https://help.example")


# --- which account a flow sends from ----------------------------------------------------------------------


@pytest.mark.parametrize(("flow_account", "default_account", "accounts", "sent_from"), [
    (None, None, ("acct-1", "acct-2"), "acct-1"),  # the earliest registered
    (None, "acct-2", ("acct-1", "acct-2"), "acct-2"),  # the tenant's chosen default
    (None, "acct-gone", ("acct-1", "acct-2"), "acct-1"),  # a default no longer registered: the earliest
    ("acct-2", "acct-1", ("acct-1", "acct-2"), "acct-2"),  # the flow's own
    (None, None, (), None),
    ("acct-gone", None, ("acct-1",), None),  # the flow's own, no longer registered: not sent from another
])
def test_the_account_is_the_flows_else_the_tenants_default(flow_account: str | None, default_account: str | None,
                                                           accounts: tuple[str, ...], sent_from: str | None) -> None:
    cfg = engine_config(TENANT, TenantSettings(default_account_id=default_account),
                        {"order_confirmation": OrderConfirmationSettings(account_id=flow_account)}, accounts)
    (decision,) = decide(profile(), payment(), T0, cfg)
    if sent_from is None:
        assert isinstance(decision, Suppress)
        expected = (f"WhatsApp account {flow_account} chosen for flow order_confirmation is not registered for this "
                    "tenant") if flow_account else "no WhatsApp account configured for this tenant"
        assert decision.reason == expected
    else:
        assert isinstance(decision, Send)
        assert decision.account_id == sent_from


def test_a_tenant_without_stored_settings_runs_every_flow_on_its_defaults() -> None:
    cfg = engine_config(TENANT, TenantSettings(), {}, ("acct-1",))
    assert cfg.flows == {name: kind() for name, kind in FLOWS.items()}
    assert cfg.account_id == "acct-1"
