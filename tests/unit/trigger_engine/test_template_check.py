"""domain.template_check: a settings change may not name a template the sender lacks on the account the flow would
send from; what it checks is only what the change newly binds, reported at the field that bound it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from trigger_engine.domain.flows import FLOWS, engine_config
from trigger_engine.domain.model import EngineConfig
from trigger_engine.domain.order_confirmation import OrderConfirmationSettings
from trigger_engine.domain.settings import FlowSettings, TenantSettings
from trigger_engine.domain.template_check import (
    LISTED_MAX,
    CatalogTemplate,
    accounts_to_fetch,
    bindings,
    template_faults,
    template_maps,
)
from trigger_engine.domain.welcome import WelcomeSettings

A1, A2 = "100000000000001", "100000000000002"
OC = "order_confirmation"


def _t(name: str, language: str, status: str = "APPROVED") -> CatalogTemplate:
    return CatalogTemplate(name, language, status)


# What the sender lists: A1 has the default templates and a v2 in German; A2 has only English ones.
CATALOGS: dict[str, tuple[CatalogTemplate, ...]] = {
    A1: (_t("order_confirmation", "en_US"), _t("order_confirmation", "de"), _t("order_confirmed_v2", "de"),
         _t("welcome", "en_US"), _t("welcome", "de"), _t("welcome_generic", "en_US"), _t("welcome_generic", "de"),
         _t("shipping_paused", "de", "PAUSED"), _t("old_confirmation", "de", "DELETED")),
    A2: (_t("order_confirmation", "en_US"), _t("welcome", "en_US"), _t("welcome_generic", "en_US")),
}


# The commerce flows (issue 9) are off here: these tests are about the welcome and the order confirmation, on
# catalogs that hold only theirs; the commerce flows' templates are checked in test_commerce_templates.
COMMERCE_OFF: dict[str, FlowSettings] = {name: FLOWS[name](enabled=False) for name in
                                         ("abandoned_cart", "price_drop", "shipment_update", "anti_fraud_notice")}


def config(*, flows: Mapping[str, FlowSettings] | None = None, accounts: tuple[str, ...] = (A1, A2),
           **settings: Any) -> EngineConfig:
    return engine_config("shop", TenantSettings(**settings), {**COMMERCE_OFF, **(flows or {})}, accounts)


def oc(**changes: Any) -> OrderConfirmationSettings:
    return OrderConfirmationSettings(**changes)


def flow_change(after_flow: FlowSettings, *, before_flow: FlowSettings | None = None,
                catalogs: Mapping[str, tuple[CatalogTemplate, ...]] = CATALOGS,
                accounts: tuple[str, ...] = (A1, A2)) -> list[tuple[str, str]]:
    before = config(flows={OC: before_flow or oc()}, accounts=accounts)
    after = config(flows={OC: after_flow}, accounts=accounts)
    assert accounts_to_fetch(before, after) <= set(catalogs)
    return template_faults(before, after, catalogs, flow=OC)


@pytest.mark.parametrize(("after", "expected"), [
    # an existing template, in any status but deleted, is accepted
    (oc(templates={"en_US": "order_confirmation", "de": "order_confirmed_v2"}), []),
    (oc(templates={"en_US": "order_confirmation", "de": "shipping_paused"}), []),
    # a template the account lacks: refused at the entry that names it, with the account's templates in that language
    (oc(templates={"en_US": "order_confirmation", "de": "does_not_exist"}),
     [("body.templates.de", f"no template does_not_exist (de) on account {A1} (its templates in de: "
                            "order_confirmation, order_confirmed_v2, shipping_paused, welcome, welcome_generic)")]),
    # a language the account has nothing in
    (oc(templates={"en_US": "order_confirmation", "de": "order_confirmation", "xx": "order_confirmation"}),
     [("body.templates.xx", f"no template order_confirmation (xx) on account {A1} (its templates in xx: none)")]),
    # a template the sender lists as deleted is absent
    (oc(templates={"en_US": "order_confirmation", "de": "old_confirmation"}),
     [("body.templates.de", f"no template old_confirmation (de) on account {A1} (its templates in de: "
                            "order_confirmation, order_confirmed_v2, shipping_paused, welcome, welcome_generic)")]),
    # moved to an account without the German template: reported at account_id
    (oc(account_id=A2),
     [("body.account_id", f"no template order_confirmation (de) on account {A2} (its templates in de: none)")]),
    # both entries wrong: one fault per field
    (oc(templates={"en_US": "nope", "de": "nope"}),
     [("body.templates.de", f"no template nope (de) on account {A1} (its templates in de: order_confirmation, "
                            "order_confirmed_v2, shipping_paused, welcome, welcome_generic)"),
      ("body.templates.en_US", f"no template nope (en_US) on account {A1} (its templates in en_US: "
                               "order_confirmation, welcome, welcome_generic)")]),
])
def test_a_flow_change_is_checked_against_the_account_it_sends_from(after: FlowSettings,
                                                                    expected: list[tuple[str, str]]) -> None:
    assert flow_change(after) == expected


def test_turning_a_flow_on_checks_all_its_templates_and_turning_it_off_checks_nothing() -> None:
    broken = oc(templates={"en_US": "order_confirmation", "de": "gone_meanwhile"}, enabled=False)
    on = oc(templates={"en_US": "order_confirmation", "de": "gone_meanwhile"})
    assert flow_change(on, before_flow=broken) == [
        ("body.enabled", f"no template gone_meanwhile (de) on account {A1} (its templates in de: order_confirmation, "
                         "order_confirmed_v2, shipping_paused, welcome, welcome_generic)")]
    # off: nothing bound, nothing to ask the sender (works while it is down)
    before, after = config(flows={OC: on}), config(flows={OC: broken})
    assert accounts_to_fetch(before, after) == frozenset()
    assert template_faults(before, after, {}, flow=OC) == []


def test_what_was_bound_before_is_not_checked_again() -> None:
    # a template deleted at the sender since it was set does not block changing a number of the flow
    stale = oc(templates={"en_US": "order_confirmation", "de": "gone_meanwhile"})
    before, after = config(flows={OC: stale}), config(flows={OC: oc(templates=stale.templates, max_items=5)})
    assert bindings(before) == bindings(after)
    assert accounts_to_fetch(before, after) == frozenset()
    assert template_faults(before, after, {}, flow=OC) == []


def test_a_tenant_without_an_account_binds_nothing() -> None:
    before = config(accounts=())
    after = config(flows={OC: oc(templates={"xx": "anything"})}, default_language="xx", accounts=())
    assert bindings(after) == frozenset()
    assert accounts_to_fetch(before, after) == frozenset()
    assert template_faults(before, after, {}, flow=OC) == []


def test_every_template_map_of_a_flow_is_checked() -> None:
    assert set(template_maps(WelcomeSettings())) == {"templates", "generic_templates"}
    before = config()
    after = config(flows={"welcome": WelcomeSettings(generic_templates={"en_US": "welcome_generic", "de": "hallo"})})
    assert template_faults(before, after, CATALOGS, flow="welcome") == [
        ("body.generic_templates.de", f"no template hallo (de) on account {A1} (its templates in de: "
                                      "order_confirmation, order_confirmed_v2, shipping_paused, welcome, "
                                      "welcome_generic)")]


def test_an_account_without_templates_says_to_sync_them() -> None:
    assert flow_change(oc(), before_flow=oc(enabled=False), catalogs={A1: ()}) == [
        ("body.enabled", f"no template order_confirmation (de) on account {A1} (the sender has no templates for it: "
                         "sync them, POST /v1/templates/sync); no template order_confirmation (en_US) on account "
                         f"{A1} (the sender has no templates for it: sync them, POST /v1/templates/sync)")]


def test_a_long_listing_is_cut() -> None:
    many = tuple(_t(f"t{i:02d}", "de") for i in range(LISTED_MAX + 5))
    [(field, reason)] = flow_change(oc(templates={"de": "nope", "en_US": "order_confirmation"}),
                                    catalogs={A1: (*many, _t("order_confirmation", "en_US"))})
    assert field == "body.templates.de"
    assert reason.endswith(f"t{LISTED_MAX - 1:02d}, … (5 more))") and f"t{LISTED_MAX:02d}" not in reason


@pytest.mark.parametrize(("change", "expected"), [
    ({"default_account_id": A1}, []),  # the earliest account already is the default: nothing rebinds
    # the default account moves to one without the German templates: every flow on the default is named
    ({"default_account_id": A2},
     [("body.default_account_id",
       f"flow order_confirmation would send from it: no template order_confirmation (de) on account {A2} (its "
       f"templates in de: none); flow welcome would send from it: no template welcome_generic (de) on account {A2} "
       f"(its templates in de: none); flow welcome would send from it: no template welcome (de) on account {A2} (its "
       "templates in de: none)")]),
    ({"default_language": "de"}, []),
    # a language no flow that is on has a template in
    ({"default_language": "xx_YY"},
     [("body.default_language", "no flow that is on (order_confirmation, welcome) has a template in xx_YY on its "
                                "account; the languages they can send: de, en_US")]),
])
def test_a_tenant_settings_change(change: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    before, after = config(), config(**change)
    assert accounts_to_fetch(before, after) <= set(CATALOGS)
    assert template_faults(before, after, CATALOGS) == expected


def test_a_default_language_only_a_disabled_flow_has_is_refused() -> None:
    flows = {OC: oc(templates={"en_US": "order_confirmation", "de": "order_confirmation"}),
             "welcome": WelcomeSettings(enabled=False, templates={"en_US": "welcome", "fr": "welcome"},
                                        generic_templates={"en_US": "welcome_generic", "fr": "welcome_generic"})}
    before, after = config(flows=flows), config(flows=flows, default_language="fr")
    assert template_faults(before, after, CATALOGS) == [
        ("body.default_language", "no flow that is on (order_confirmation) has a template in fr on its account; the "
                                  "languages they can send: de, en_US")]
