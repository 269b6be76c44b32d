"""Template fields: status, quality and category updates → `template.updated`, routed by the WABA id.

- `message_template_status_update`: `event` is the new status (APPROVED, REJECTED, PAUSED, DISABLED,
  FLAGGED, REINSTATED …), `reason` Meta's reason (and the rejection detail when given).
- `message_template_quality_update`: `quality` GREEN / YELLOW / RED / UNKNOWN and `previous_quality`.
  (Meta's reference shows this shape under the status field too; it is read by its shape.)
- `template_category_update`: a completed change has `event` CATEGORY_UPDATED with `category` and
  `previous_category`; an announced one (`correct_category`) has `event` CATEGORY_UPDATE_PENDING,
  `category` the category it will get, `previous_category` its current one, `reason` when it applies.
"""

from __future__ import annotations

from datetime import UTC, datetime

from scrm_common.contracts.events import TemplateUpdated, TemplateUpdateData

from .change import Change
from .model import Findings
from .reading import ItemReader, ident, obj, stable_id


def _data(change: Change, **update: str | None) -> TemplateUpdateData:
    """The template named by the change, with the fields its kind of update sets; validated."""
    value = change.value
    return TemplateUpdateData.model_validate({
        "field": change.field, "waba_id": change.waba_id,
        "template_id": ident(value.get("message_template_id")),
        "name": ident(value.get("message_template_name")),
        "language": ident(value.get("message_template_language"), 16),
        "category": ident(value.get("message_template_category")),
        **update,
    })


def _emit(change: Change, out: Findings, r: ItemReader, data: TemplateUpdateData, label: str) -> None:
    event = TemplateUpdated(
        event_id=stable_id(change.field, change.waba_id, change.entry_time, change.value), type="template.updated",
        occurred_at=r.when(change.entry_time), data=data,
    )
    out.emit(event, field=change.field, type=label, phone_number_id=None, waba_id=change.waba_id,
             repairs=r.repairs, detail=data.template_id)


def read_template_status(change: Change, out: Findings) -> None:
    """A template's new status; a quality-shaped value under this field is read as a quality update."""
    value = change.value
    if "new_quality_score" in value and "event" not in value:
        read_template_quality(change, out)
        return
    r = ItemReader(out.now)
    rejection = obj(value.get("rejection_info")).get("reason")
    reason = "; ".join(p for p in (r.text(value.get("reason"), 256), r.text(rejection, 700)) if p) or None
    event = ident(value.get("event"))
    data = _data(change, event=event, reason=reason)
    _emit(change, out, r, data, event or "status")


def read_template_quality(change: Change, out: Findings) -> None:
    """A template's quality score changed."""
    value = change.value
    r = ItemReader(out.now)
    data = _data(change, quality=ident(value.get("new_quality_score")),
                 previous_quality=ident(value.get("previous_quality_score")))
    _emit(change, out, r, data, data.quality or "quality")


def read_template_category(change: Change, out: Findings) -> None:
    """A template's category changed, or will change in 24 hours."""
    value = change.value
    r = ItemReader(out.now)
    upcoming = ident(value.get("correct_category"))
    if upcoming is not None:
        when = r.iso_time(value.get("category_update_timestamp"))
        fields: dict[str, str | None] = {
            "event": "CATEGORY_UPDATE_PENDING", "category": upcoming,
            "previous_category": ident(value.get("new_category")),
            "reason": f"effective {when.astimezone(UTC).isoformat()}" if isinstance(when, datetime) else None,
        }
    else:
        fields = {"event": "CATEGORY_UPDATED", "category": ident(value.get("new_category")),
                  "previous_category": ident(value.get("previous_category"))}
    data = _data(change, **fields)
    _emit(change, out, r, data, data.event or "category")
