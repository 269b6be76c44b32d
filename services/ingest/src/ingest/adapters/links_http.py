"""Public short links: `GET|HEAD /l/{code}` and `GET|HEAD /r/{token}` (R-T6.5, R-R4) — no API key.

Loads the stored link (`LinkStore`), verifies a resume token, asks `ingest.domain.links` what the click answers,
publishes its `link.clicked` to `scrm.events.v1` (acks=all) before answering the 302, and counts every answer in
`scrm_ingest_link_redirects_total{kind, outcome}`. Errors are small HTML pages for people, never a 500: a database
or broker failure is a 503 page with `Retry-After`. Every answer carries `Cache-Control: no-store` (each click
must reach ingest) and `Referrer-Policy: no-referrer` (the shop never sees the token in a Referer). The routes
are left out of the OpenAPI description: they answer browsers with redirects and HTML, not API clients.
"""

from __future__ import annotations

import asyncio
import html
import logging
import uuid
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from prometheus_client import CollectorRegistry, Counter

from ingest.adapters.kafka import EventPublisher
from ingest.adapters.links import LinkStore
from ingest.domain.links import (
    Answer,
    LinkKind,
    LinkRules,
    Outcome,
    Verified,
    answer_code,
    answer_token,
    is_code,
    resume_token,
    verify_resume,
)
from scrm_common.clock import Clock
from scrm_common.contracts.events import LinkClicked

log = logging.getLogger(__name__)

_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}

_PAGES: dict[int, tuple[str, str]] = {
    400: ("This link is not valid", "The link seems to have been changed or cut short. Please open it again from "
                                    "the message you received."),
    404: ("Link not found", "We could not find this link. Please check that it was copied completely."),
    410: ("This link has expired", "This link is no longer valid. Your cart may still be waiting in the shop."),
    503: ("Please try again in a moment", "We could not open this link just now. Please try again shortly."),
}


class LinkMetrics:
    """`scrm_ingest_link_redirects_total{kind, outcome}`: every answer of `/l/` and `/r/`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.redirects = Counter(
            "scrm_ingest_link_redirects_total",
            "Answers to short links (GET/HEAD /l/{code}, /r/{token}) by kind (tracked, resume, unknown) and outcome "
            "(redirected, preview: a link preview fetcher or HEAD — no click, unknown, expired, tampered, "
            "unavailable: the database or broker failed)", ["kind", "outcome"], registry=registry)


def page(status: int, *, shop_url: str | None = None, retry_after: int | None = None) -> HTMLResponse:
    """The small HTML page of an error `status` (400, 404, 410, 503), linking `shop_url` when given."""
    title, text = _PAGES[status]
    shop = (f'<p><a href="{html.escape(shop_url, quote=True)}">Go to the shop</a></p>' if shop_url else "")
    body = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width,initial-scale=1"><title>{title}</title></head>'
            f'<body style="font-family:sans-serif;max-width:32em;margin:3em auto;padding:0 1em">'
            f"<h1>{title}</h1><p>{text}</p>{shop}</body></html>")
    headers = dict(_HEADERS)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return HTMLResponse(body, status_code=status, headers=headers)


def build_links_router(*, store: LinkStore, publisher: EventPublisher, clock: Clock, metrics: LinkMetrics,
                       secret: str, rules: LinkRules, publish_timeout_seconds: float) -> APIRouter:
    """The public link routes. `secret`: SCRM_LINK_SECRET (verifies resume tokens); `publish_timeout_seconds`:
    how long a click waits for the broker before the 503 page."""
    router = APIRouter(tags=["links"])

    async def respond(request: Request, kind: LinkKind, decide: Callable[[], Awaitable[Answer]]) -> Response:
        try:
            answer = await decide()
            if answer.click is not None:
                await asyncio.wait_for(_publish(publisher, clock, answer), timeout=publish_timeout_seconds)
        except Exception:  # noqa: BLE001 - never a 500: the database or broker failed, the person may retry
            log.warning("short link %s unavailable", request.url.path.split("/")[1], exc_info=True)
            return _counted(metrics, kind, "unavailable", page(503, retry_after=rules.retry_after_seconds))
        if answer.status == 302 and answer.location is not None:
            response: Response = RedirectResponse(answer.location, status_code=302, headers=_HEADERS)
        else:
            response = page(answer.status, shop_url=answer.shop_url)
        return _counted(metrics, answer.kind, answer.outcome, response)

    @router.api_route("/l/", methods=["GET", "HEAD"], include_in_schema=False)
    @router.api_route("/r/", methods=["GET", "HEAD"], include_in_schema=False)
    async def no_code(request: Request) -> Response:
        """A link cut short (no code, no token): the friendly 404 page, like any unknown code."""
        kind: LinkKind = "resume" if request.url.path.startswith("/r/") else "unknown"
        return _counted(metrics, kind, "unknown", page(404))

    @router.api_route("/l/{code}", methods=["GET", "HEAD"], include_in_schema=False)
    async def short_link(code: str, request: Request) -> Response:
        """302 to a short link's target (tracked) or the cart's checkout URL (resume), publishing `link.clicked`."""
        async def decide() -> Answer:
            now = clock.now()
            link = await store.by_code(code) if is_code(code) else None
            verification = (verify_resume(secret, resume_token(link.target), now, rules)
                            if link is not None and link.kind == "resume" else None)
            return answer_code(link, verification, now=now, user_agent=request.headers.get("user-agent"),
                               probe=request.method == "HEAD", rules=rules)

        return await respond(request, "unknown", decide)

    @router.api_route("/r/{token}", methods=["GET", "HEAD"], include_in_schema=False)
    async def resume(token: str, request: Request) -> Response:
        """302 to the checkout URL a genuine resume token names (400 tampered, 410 expired)."""
        async def decide() -> Answer:
            now = clock.now()
            verification = verify_resume(secret, token, now, rules)
            link = None
            if isinstance(verification, Verified) and verification.key is not None:
                link = await store.resume_of(verification.tenant, verification.key)
            return answer_token(verification, link, user_agent=request.headers.get("user-agent"),
                                probe=request.method == "HEAD", rules=rules)

        return await respond(request, "resume", decide)

    return router


def _counted(metrics: LinkMetrics, kind: LinkKind, outcome: Outcome, response: Response) -> Response:
    metrics.redirects.labels(kind, outcome).inc()
    return response


async def _publish(publisher: EventPublisher, clock: Clock, answer: Answer) -> None:
    """Publish the answer's `link.clicked` (a new event id per click, occurred now) and wait for the broker."""
    click = answer.click
    assert click is not None
    now = clock.now()
    event = LinkClicked(event_id=f"click-{uuid.uuid4().hex}", type="link.clicked", occurred_at=now,
                        contact=click.contact, data=click.data)
    await publisher.publish(click.tenant, [event], ingested_at=now, correlation_id=uuid.uuid4().hex)
