"""Does a settings change name templates the sender has? (R-S2: a template the account's WABA lacks fails at the
send; a change naming one is refused at once instead, one error per field, nothing changed.)

A change is compared as two configurations of the tenant, `before` and `after` it (`EngineConfig`: every flow's
settings, the tenant's settings and its default account). What a configuration *binds* is, for every flow that
is on and has an account to send from (`EngineConfig.account_for`), each template of each of its template maps
(`templates`, and any field whose name ends in `_templates`, such as welcome's `generic_templates`) with that
account. Only what the change newly binds is checked: a template set earlier and deleted at the sender since
does not block an unrelated change, and turning a flow off is always possible. Turning a flow on binds all of
its templates anew.

The catalog is what the sender lists for an account (`GET /v1/templates?account_id=…`); the adapter fetches it
for the accounts `accounts_to_fetch` names. A template is absent when the sender does not list its name and
language, or lists it as deleted; a template that is listed in any other status (PENDING, PAUSED, REJECTED…)
is accepted: whether it may be sent is the sender's decision at send time (R-S2), and a status may change.

`body.default_language` is checked when it changes: some flow that is on must have a template in that language
on its account (otherwise every contact whose language no flow has falls back to a language nothing can be
sent in). A tenant with no account binds nothing: nothing is checked (the language's shape is the settings
model's own check).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from trigger_engine.domain.model import EngineConfig
from trigger_engine.domain.settings import FlowSettings

# Statuses under which the sender lists a template that is no longer there (Meta: deleted, or being deleted).
GONE_STATUSES: frozenset[str] = frozenset({"DELETED", "PENDING_DELETION"})
# How many template names a refusal lists at most.
LISTED_MAX = 20


@dataclass(frozen=True, slots=True)
class CatalogTemplate:
    """One template the sender lists for an account: its name, language (`en_US`) and status (`APPROVED`)."""

    name: str
    language: str
    status: str

    @property
    def present(self) -> bool:
        """False for a template the sender lists as deleted."""
        return self.status.upper() not in GONE_STATUSES


# account id → the templates the sender lists for it.
Catalogs = Mapping[str, Collection[CatalogTemplate]]


@dataclass(frozen=True, slots=True, order=True)
class Binding:
    """One template a flow would send: flow `flow`'s map `field` (`templates`) names `name` for `language`, sent
    from account `account_id`."""

    flow: str
    field: str
    language: str
    name: str
    account_id: str


def template_maps(settings: FlowSettings) -> dict[str, Mapping[str, str]]:
    """A flow's template maps by field name ({language: template name}): `templates` and every `…_templates`."""
    found: dict[str, Mapping[str, str]] = {}
    for name in type(settings).model_fields:
        if name == "templates" or name.endswith("_templates"):
            value = getattr(settings, name)
            if isinstance(value, Mapping):
                found[name] = value
    return found


def bindings(config: EngineConfig) -> frozenset[Binding]:
    """Every template the flows of `config` that are on would send, with the account each sends from; a flow
    that is off or has no account (the tenant has none, or the flow's own is not the tenant's) binds nothing."""
    found: set[Binding] = set()
    for flow, settings in config.flows.items():
        account = config.account_for(settings)
        if not settings.enabled or account is None:
            continue
        for field, templates in template_maps(settings).items():
            found.update(Binding(flow, field, language, name, account) for language, name in templates.items())
    return frozenset(found)


def new_bindings(before: EngineConfig, after: EngineConfig) -> frozenset[Binding]:
    """What `after` binds that `before` did not: the templates a change asks the sender to have."""
    return bindings(after) - bindings(before)


def _language_changed(before: EngineConfig, after: EngineConfig) -> bool:
    return before.settings.default_language != after.settings.default_language


def accounts_to_fetch(before: EngineConfig, after: EngineConfig) -> frozenset[str]:
    """The accounts whose catalogs `template_faults` needs: those of the new bindings, and, when the default
    language changes, those of every binding of `after`. Empty: nothing to check (and nothing to fetch)."""
    wanted = {b.account_id for b in new_bindings(before, after)}
    if _language_changed(before, after):
        wanted |= {b.account_id for b in bindings(after)}
    return frozenset(wanted)


def _present(catalog: Iterable[CatalogTemplate]) -> frozenset[tuple[str, str]]:
    return frozenset((t.name, t.language) for t in catalog if t.present)


def _listing(names: Iterable[str]) -> str:
    ordered = sorted(set(names))
    if not ordered:
        return "none"
    shown = ", ".join(ordered[:LISTED_MAX])
    return shown + (f", … ({len(ordered) - LISTED_MAX} more)" if len(ordered) > LISTED_MAX else "")


def missing_reason(binding: Binding, catalog: Collection[CatalogTemplate]) -> str:
    """Why `binding` is refused: "no template order_confirmed_v2 (de) on account 1000… (its templates in de:
    order_confirmation, shipping_update)"; an account with no templates at all says to sync them."""
    head = f"no template {binding.name} ({binding.language}) on account {binding.account_id}"
    present = _present(catalog)
    if not present:
        return f"{head} (the sender has no templates for it: sync them, POST /v1/templates/sync)"
    in_language = (name for name, language in present if language == binding.language)
    return f"{head} (its templates in {binding.language}: {_listing(in_language)})"


def _field(binding: Binding, before: EngineConfig, flow: str | None) -> str:
    """The request field a refused binding is reported at: in a change of `flow`, the template map entry
    when that entry changed, else `account_id` when the flow's account changed, else `enabled` (turned on);
    in a change of the tenant's settings, `default_account_id` (the only way it rebinds a template)."""
    if flow is None:
        return "body.default_account_id"
    old = before.flows.get(flow)
    old_maps = template_maps(old) if old is not None else {}
    if old_maps.get(binding.field, {}).get(binding.language) != binding.name:
        return f"body.{binding.field}.{binding.language}"
    if old is None or before.account_for(old) != binding.account_id:
        return "body.account_id"
    return "body.enabled"


def template_faults(before: EngineConfig, after: EngineConfig, catalogs: Catalogs, *,
                    flow: str | None = None) -> list[tuple[str, str]]:
    """(field, reason) for every template `after` newly binds that the sender does not have on its account,
    and for a changed default language no flow that is on can send in; one entry per field (reasons of one
    field joined with "; "), in field order. `flow`: the flow the change is to (None: the tenant's settings).

    `catalogs` must hold every account of `accounts_to_fetch(before, after)` (KeyError otherwise)."""
    faults: dict[str, list[str]] = {}
    for binding in sorted(new_bindings(before, after)):
        catalog = catalogs[binding.account_id]
        if (binding.name, binding.language) in _present(catalog):
            continue
        reason = missing_reason(binding, catalog)
        if flow is None:
            reason = f"flow {binding.flow} would send from it: {reason}"
        faults.setdefault(_field(binding, before, flow), []).append(reason)
    if _language_changed(before, after):
        language = after.settings.default_language
        bound = bindings(after)
        sendable = {b.language for b in bound if (b.name, b.language) in _present(catalogs[b.account_id])}
        if bound and language not in sendable:
            flows = sorted({b.flow for b in bound})
            faults.setdefault("body.default_language", []).append(
                f"no flow that is on ({', '.join(flows)}) has a template in {language} on its account; the "
                f"languages they can send: {_listing(sendable)}")
    return [(field, "; ".join(reasons)) for field, reasons in sorted(faults.items())]
