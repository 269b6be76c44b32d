"""Which tenant a webhook event belongs to: the owner of its phone number id, else of its WABA id."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from scrm_common.contracts.events import Event

from .model import UNKNOWN_ACCOUNT, UNKNOWN_NUMBER, Routed, Skipped

# A skip reason that depends on the tenant's state, not on the payload (so not in `model`, whose reasons the
# webhook corpus covers): the owning tenant is disabled; its webhooks are acknowledged and dropped.
TENANT_DISABLED = "tenant_disabled"


def route(events: Iterable[Routed], *, numbers: Mapping[str, str | None], accounts: Mapping[str, str | None],
          disabled: Collection[str] = ()) -> tuple[dict[str, list[Event]], list[Skipped]]:
    """Events by tenant, and those no tenant owns (`unknown_number` / `unknown_account`) or whose tenant
    is one of the `disabled` (`tenant_disabled`): skipped, so counted and logged, never published.

    An event naming a phone number id (messages, statuses, preferences) goes to that number's owner
    and only there; one naming only a WABA id (template and account updates) to the WABA's owner.
    `numbers` / `accounts` map the ids looked up to their tenant (None: nobody's).
    """
    by_tenant: dict[str, list[Event]] = {}
    skipped: list[Skipped] = []
    for item in events:
        if item.phone_number_id is not None:
            tenant = numbers.get(item.phone_number_id)
            reason, detail = UNKNOWN_NUMBER, item.phone_number_id
        elif item.waba_id is not None:
            tenant = accounts.get(item.waba_id)
            reason, detail = UNKNOWN_ACCOUNT, item.waba_id
        else:
            tenant, reason, detail = None, UNKNOWN_NUMBER, "no phone_number_id in metadata"
        if tenant is not None and tenant in disabled:
            tenant, reason, detail = None, TENANT_DISABLED, f"{detail} of tenant {tenant}"
        if tenant is None:
            skipped.append(Skipped(item.field, item.type, reason, (), f"{detail} ({item.event.event_id})"))
        else:
            by_tenant.setdefault(tenant, []).append(item.event)
    return by_tenant, skipped
