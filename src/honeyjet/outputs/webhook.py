"""Webhook channel: alerts and digests POSTed as JSON to one configured URL.

Formats (``webhook.format``):

* ``json`` — the alert dict as is; a digest as ``{"digest": [alerts…], "count": N, …}``.
* ``slack`` — an incoming-webhook body ``{"text": …, "blocks": […]}``; every text from an
  event is mrkdwn-escaped (``&`` ``<`` ``>``), so no mention, link or channel ping can be
  injected.
* ``teams`` — a Microsoft Teams Workflows message with one Adaptive Card (1.4):
  ``{"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
  "content": {…}}]}``; markdown characters from events are backslash-escaped.

The URL comes from the configuration only, never from event data; redirects are not
followed; any status outside 2xx is a failure (counted by the queue).
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from honeyjet import __version__
from honeyjet.outputs.base import QueuedOutput

DIGEST_LINES = 20  # alerts listed in a Slack / Teams digest; the rest are counted
SLACK_TEXT = 2900  # Slack caps a section text at 3000 characters
_MD_SPECIAL = re.compile(r"([\\`*_\[\]~#>])")  # emphasis, code, links, headings, quotes


def slack_escape(text: Any) -> str:
    """Slack mrkdwn: ``&``, ``<`` and ``>`` as entities (no links, mentions or pings)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def md_escape(text: Any) -> str:
    """Markdown for an Adaptive Card TextBlock/FactSet: special characters backslash-escaped."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _facts(alert: dict[str, Any]) -> list[tuple[str, str]]:
    facts = [
        ("Severity", alert.get("severity", "")),
        ("Source", alert.get("src_ip", "")),
        ("Service", alert.get("service", "")),
        ("Classes", ", ".join(alert.get("classes") or [])),
        ("Rules", ", ".join(f"{r} ({n})" for r, n in zip(alert.get("rules") or [], alert.get("rule_names") or []))),
    ]
    if alert.get("session"):
        facts.append(("Session", alert["session"]))
    if alert.get("attribution"):
        facts.append(("Attribution", "; ".join(alert["attribution"])))
    if alert.get("suppressed"):
        facts.append(("Suppressed repeats", str(alert["suppressed"])))
    facts.append(("Sensor", alert.get("sensor", "")))
    facts.append(("Event", alert.get("event_uuid", "")))
    return facts


def _digest_title(digest: dict[str, Any]) -> str:
    sev = ", ".join(f"{n} {s}" for s, n in sorted(digest.get("by_severity", {}).items()))
    return f"honeyjet digest: {digest.get('count', 0)} alerts ({sev}) from {digest.get('sensor', '')}"


def slack_body(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    if kind == "digest":
        alerts = payload.get("digest", [])
        lines = [f"• {slack_escape(a.get('message', ''))}" for a in alerts[:DIGEST_LINES]]
        more = payload.get("count", 0) - len(lines)
        if more > 0:
            lines.append(f"… and {more} more")
        title = slack_escape(_digest_title(payload))
        return {
            "text": title,
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*"}},
                {"type": "section", "text": {"type": "mrkdwn", "text": _clip("\n".join(lines), SLACK_TEXT)}},
            ],
        }
    fields = [{"type": "mrkdwn", "text": _clip(f"*{name}*\n{slack_escape(value)}", 1990)} for name, value in _facts(payload) if value][:10]
    text = slack_escape(payload.get("message", ""))
    return {
        "text": f"honeyjet alert: {text}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": _clip(f"*honeyjet alert* {text}", SLACK_TEXT)}},
            {"type": "section", "fields": fields},
        ],
    }


def teams_body(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    if kind == "digest":
        title = _digest_title(payload)
        alerts = payload.get("digest", [])
        body: list[dict[str, Any]] = [{"type": "TextBlock", "text": md_escape(a.get("message", "")), "wrap": True} for a in alerts[:DIGEST_LINES]]
        more = payload.get("count", 0) - min(len(alerts), DIGEST_LINES)
        if more > 0:
            body.append({"type": "TextBlock", "text": f"… and {more} more", "isSubtle": True})
    else:
        title = f"honeyjet alert: {payload.get('message', '')}"
        facts = [{"title": name, "value": md_escape(value)} for name, value in _facts(payload) if value]
        body = [{"type": "FactSet", "facts": facts}]
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [{"type": "TextBlock", "text": md_escape(title), "weight": "Bolder", "size": "Medium", "wrap": True}, *body],
    }
    return {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}


def json_body(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    return payload  # a digest already has "digest": [...] and "count": N


BODIES = {"json": json_body, "slack": slack_body, "teams": teams_body}


class WebhookOutput(QueuedOutput):
    """POST each alert or digest to ``webhook.url``."""

    name = "webhook"

    def __init__(self, settings: Any) -> None:
        super().__init__(queue=settings.queue, timeout=settings.timeout)
        self.url = settings.url
        self.format = settings.format
        self.headers = {"User-Agent": f"honeyjet/{__version__}", **settings.headers}
        self.body = BODIES[self.format]
        self._session: aiohttp.ClientSession | None = None
        self.last_status = 0

    def render(self, item: tuple[str, dict[str, Any]]) -> dict[str, Any]:
        kind, payload = item
        return self.body(kind, payload)

    async def opened(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers=self.headers,
            trust_env=False,  # no proxy from the environment: the URL is the one configured
        )

    async def deliver(self, item: tuple[str, dict[str, Any]]) -> None:
        if item[0] == "event":
            return  # the webhook takes alerts and digests only
        assert self._session is not None
        async with self._session.post(self.url, json=self.render(item), allow_redirects=False) as resp:
            self.last_status = resp.status
            if not 200 <= resp.status < 300:
                raise RuntimeError(f"HTTP {resp.status} from the webhook")

    async def closed(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
