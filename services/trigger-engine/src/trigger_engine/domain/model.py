"""What the engine remembers about a contact, and the per-tenant flow configuration."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from trigger_engine.domain.parameters import ParameterRules

MarketingPreference = Literal["stop", "resume", "signup"]


@dataclass(frozen=True, slots=True)
class ContactProfile:
    """The facts about one person that flows need: how to reach and address them.

    `contact_key` is the person's key: the first identity the platform saw them by; every other
    identity (external ids, phone, wa_id …) is an alias of it (see `identity`). `name` is the shop's
    name for them; `profile_name` their WhatsApp profile name, used only when the shop gave none.
    `marketing` is the customer's own marketing choice in WhatsApp (`stop`/`resume`/`signup`), as of
    `marketing_changed_at`.
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
    def stopped_marketing(self) -> bool:
        """True while the customer has stopped marketing messages in WhatsApp (CLOUD-API.md §9)."""
        return self.marketing == "stop"


@dataclass(frozen=True, slots=True)
class WelcomeConfig:
    """R-T1: greeting with a first-purchase code."""

    enabled: bool = True
    discount_percent: int = 10  # R-T1.2
    code_prefix: str = "WELCOME"
    code_valid_for: timedelta = timedelta(days=7)  # R-T1.3
    expire_after: timedelta = timedelta(minutes=15)  # R-T1.1: interaction drops after 15 minutes
    template: str = "welcome"
    generic_template: str = "welcome_generic"  # R-T1.4


@dataclass(frozen=True, slots=True)
class OrderConfirmationConfig:
    """R-T2: order confirmation at once, exactly one per order."""

    enabled: bool = True
    template: str = "order_confirmation"
    max_items: int = 3  # R-T2.2
    max_body_chars: int = 210  # R-T2.2
    template_text_chars: int = 96  # the template's own text without its variables (longest language)
    item_name_chars: int = 24
    home_region: str = "DE"
    near_regions: frozenset[str] = frozenset({
        "AT", "BE", "BG", "CY", "CZ", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT", "LT",
        "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK", "EU",
    })
    base_days_home: int = 1  # R-T2.3: base days by region 1 / 3 / 5
    base_days_near: int = 3
    base_days_far: int = 5
    buffer_days: int = 2  # R-T2.3
    tracking_url: str = "https://shop.example/t/{order_id}"
    support_url: str = "https://shop.example/help"
    # R-T2.1 is a latency target; a confirmation arriving late is still wanted, a day late is not.
    expire_after: timedelta = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Everything a tenant can tune about its flows; defaults are SPEC.md's."""

    tenant: str
    account_id: str | None  # the WhatsApp account the tenant's flows send from; None: none configured
    default_language: str = "en_US"
    languages: frozenset[str] = frozenset({"en_US", "de"})
    welcome: WelcomeConfig = field(default_factory=WelcomeConfig)
    order_confirmation: OrderConfirmationConfig = field(default_factory=OrderConfirmationConfig)
    parameters: ParameterRules = field(default_factory=ParameterRules)

    def language_for(self, locale: str | None) -> str:
        """The template language for a contact's locale (`de-DE` → `de`), else the default."""
        if locale:
            normalised = locale.replace("-", "_")
            if normalised in self.languages:
                return normalised
            base = normalised.split("_", 1)[0]
            if base in self.languages:
                return base
            for language in sorted(self.languages):
                if language.split("_", 1)[0] == base:
                    return language
        return self.default_language
