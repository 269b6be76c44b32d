"""What the engine remembers about a contact, and a tenant's configuration as a batch decides with it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal, TypeVar

from trigger_engine.domain.parameters import ParameterRules
from trigger_engine.domain.settings import FlowSettings, TenantSettings, language_for

MarketingPreference = Literal["stop", "resume", "signup"]
F = TypeVar("F", bound=FlowSettings)


@dataclass(frozen=True, slots=True)
class ContactProfile:
    """The facts about one person that flows need: how to reach and address them.

    `contact_key` is the person's key: the first identity the platform saw them by; every other
    identity (external ids, phone, wa_id …) is an alias of it (see `identity`). `name` is the shop's
    name for them; `profile_name` their WhatsApp profile name, used only when the shop gave none.
    `marketing` is the customer's own marketing choice in WhatsApp (`stop`/`resume`/`signup`), as of
    `marketing_changed_at`.

    `created_at` (aware UTC) is when the person was created: the earliest `contact.created` of any of their
    identities (None: never told, e.g. known only from a payment, or recorded before this was kept).
    `first_purchase_at` / `first_purchase_event` are the `occurred_at` and `event_id` of their earliest
    `payment.succeeded` (None: no purchase seen) — a first purchase withdraws a waiting welcome (R-T1).
    `preferences` are the person's stated preferences as the shop's last `contact.created`/`contact.updated`
    naming any gave them (key → JSON scalar, as the event had them: `max_promotions_per_week`, `passive` …;
    None: never stated) — handed to the send gate with every message (R-G4, R-S5).
    `state` is what flows remember about the person beyond these facts, by slot (`carts` for R-T6, `price_drops`
    R-T6.2, `shipments` R-T3, `orders` R-T2.5): slot → entity id (cart id, SKU, order id) → a JSON value the
    slot's flow module reads and writes (stored as one jsonb column). Two persons merge slot by slot, entity by
    entity (`decide.absorb`).
    """

    contact_key: str
    phone: str | None = None
    name: str | None = None
    locale: str | None = None
    timezone: str | None = None
    opted_in: bool | None = None
    wa_id: str | None = None
    profile_name: str | None = None
    marketing: MarketingPreference | None = None
    marketing_changed_at: datetime | None = None
    created_at: datetime | None = None
    first_purchase_at: datetime | None = None
    first_purchase_event: str | None = None
    preferences: Mapping[str, object] | None = None
    state: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))

    def slot(self, name: str) -> Mapping[str, Any]:
        """The flows' memory `name` (`carts`, `price_drops`, `shipments`, `orders` …): entity id → JSON value
        (empty when nothing is kept)."""
        return self.state.get(name) or MappingProxyType({})

    def with_slot(self, name: str, value: Mapping[str, Any]) -> ContactProfile:
        """A copy whose memory `name` is `value` (an empty `value` drops the slot)."""
        state = {k: v for k, v in self.state.items() if k != name}
        if value:
            state[name] = value
        return replace(self, state=MappingProxyType(state))

    def merged(self, *, phone: str | None = None, name: str | None = None, locale: str | None = None,
               timezone: str | None = None, opted_in: bool | None = None, wa_id: str | None = None,
               profile_name: str | None = None) -> ContactProfile:
        """A copy with the given fields replaced where they are known (None never erases)."""
        return replace(
            self,
            phone=phone if phone is not None else self.phone,
            name=name if name is not None else self.name,
            locale=locale if locale is not None else self.locale,
            timezone=timezone if timezone is not None else self.timezone,
            opted_in=opted_in if opted_in is not None else self.opted_in,
            wa_id=wa_id if wa_id is not None else self.wa_id,
            profile_name=profile_name if profile_name is not None else self.profile_name,
        )

    @property
    def purchased(self) -> bool:
        """True once a `payment.succeeded` of the person was seen."""
        return self.first_purchase_at is not None

    @property
    def stopped_marketing(self) -> bool:
        """True while the customer has stopped marketing messages in WhatsApp (CLOUD-API.md §9)."""
        return self.marketing == "stop"


@dataclass(frozen=True, slots=True)
class LinkKeys:
    """How the installation writes short links (R-T6.5, R-R4): the secret codes and resume tokens are made with
    (`SCRM_LINK_SECRET`), the public base URL (`SCRM_PUBLIC_BASE_URL`, e.g. `https://wa.shop.de`) and the code's
    length in characters."""

    secret: str = "dev-link-secret"
    base_url: str = "http://127.0.0.1:8080"
    code_chars: int = 8


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Everything a tenant has tuned about its flows, as one batch decides with it.

    `account_id` is the tenant's default WhatsApp account (None: it has none); `accounts` the accounts it
    owns (None: not known, any account a flow names is taken as given). `flows` holds each flow's
    settings by name; a flow not in it runs on its model's defaults (SPEC.md's).
    """

    tenant: str
    account_id: str | None
    settings: TenantSettings = field(default_factory=TenantSettings)
    flows: Mapping[str, FlowSettings] = field(default_factory=dict)
    accounts: frozenset[str] | None = None
    parameters: ParameterRules = field(default_factory=ParameterRules)
    links: LinkKeys = field(default_factory=lambda: LinkKeys())

    def flow(self, name: str, kind: type[F]) -> F:
        """The settings of flow `name` (of model `kind`): the tenant's, else the defaults."""
        found = self.flows.get(name)
        return found if isinstance(found, kind) else kind()

    def account_for(self, flow: FlowSettings) -> str | None:
        """The account a flow sends from: its own when it names one the tenant owns, else the tenant's default;
        None when the flow's own account is not the tenant's (any more) or the tenant has none."""
        if flow.account_id is not None:
            return flow.account_id if self.accounts is None or flow.account_id in self.accounts else None
        return self.account_id

    @property
    def default_language(self) -> str:
        """The template language for a contact whose language a flow has no template for."""
        return self.settings.default_language

    def language_for(self, locale: str | None, languages: Iterable[str]) -> str:
        """The template language for a contact's locale (`de-DE` → `de`) among `languages` (those a flow has
        templates in), else the tenant's default language."""
        return language_for(locale, frozenset(languages), self.default_language)
