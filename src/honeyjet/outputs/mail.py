"""E-mail channel: one plain-text mail per alert, or one per digest, sent with aiosmtplib.

``email.starttls = true`` (the default) requires STARTTLS — a server that does not offer
it fails the delivery rather than receiving the alert in clear; ``email.tls = true`` uses
implicit TLS (port 465) and takes precedence. ``ca_file`` pins the CA bundle that signs the
server's certificate. Login happens only when ``username`` is set; the password comes from
``password`` or ``password_file`` (read once at start).

The subject is one bounded line (``[honeyjet] high file_exfiltration from 203.0.113.9``);
every value in the body is made printable and put on its own ``key: value`` line, so no
event text can add a header or a MIME part. (The module is ``mail``, not ``email``, so it
never stands in for the standard library's package.)
"""

from __future__ import annotations

import email.utils
import re
import socket
import ssl
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib

from honeyjet import __version__
from honeyjet.outputs.alerts import oneline
from honeyjet.outputs.base import QueuedOutput

SUBJECT_MAX = 200
_HOSTNAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
DIGEST_BODY_ALERTS = 1000  # every alert a digest keeps

_FIELDS = ("message", "severity", "kind", "src_ip", "session", "service", "classes", "rules", "rule_names", "attribution",
           "suppressed", "timestamp", "sensor", "event_uuid")


def subject_line(text: str) -> str:
    """One line, no CR/LF or other control characters, at most SUBJECT_MAX characters."""
    line = oneline(text, SUBJECT_MAX * 4)
    return line if len(line) <= SUBJECT_MAX else line[: SUBJECT_MAX - 1] + "…"


def alert_subject(alert: dict[str, Any]) -> str:
    classes = alert.get("classes") or ["unclassified"]
    text = f"[honeyjet] {alert.get('severity', '')} {classes[0]} from {alert.get('src_ip') or '-'}"
    if alert.get("kind") == "source":
        text += " (source)"
    return subject_line(text)


def alert_lines(alert: dict[str, Any]) -> list[str]:
    lines = []
    for key in _FIELDS:
        value = alert.get(key)
        if value is None or value == "" or value == []:
            continue
        if isinstance(value, list):
            value = ", ".join(oneline(v) for v in value) if key != "attribution" else " | ".join(oneline(v) for v in value)
        lines.append(f"{key}: {oneline(value, 2048)}")
    return lines


def digest_subject(digest: dict[str, Any]) -> str:
    sev = ", ".join(f"{n} {s}" for s, n in sorted(digest.get("by_severity", {}).items()))
    return subject_line(f"[honeyjet] digest: {digest.get('count', 0)} alerts ({sev}) from {digest.get('sensor', '')}")


def digest_text(digest: dict[str, Any]) -> str:
    out = [
        f"honeyjet alert digest from {oneline(digest.get('sensor', ''))}",
        f"period: {oneline(digest.get('period_start', ''))} .. {oneline(digest.get('period_end', ''))}",
        f"alerts: {digest.get('count', 0)}" + (f" ({digest['omitted']} not listed)" if digest.get("omitted") else ""),
        "",
    ]
    for i, alert in enumerate(digest.get("digest", [])[:DIGEST_BODY_ALERTS], 1):
        out.append(f"--- alert {i}")
        out += alert_lines(alert)
        out.append("")
    return "\n".join(out) + "\n"


class EmailOutput(QueuedOutput):
    """Send each alert (or digest) as a mail to ``email.recipients``."""

    name = "email"

    def __init__(self, settings: Any, *, sensor_name: str = "") -> None:
        super().__init__(queue=settings.queue, timeout=settings.timeout)
        self.host = settings.host
        self.port = settings.port
        self.tls = settings.tls
        self.starttls = settings.starttls and not settings.tls
        self.sender = settings.sender
        self.recipients = list(settings.recipients)
        self.username = settings.username
        self.sensor_name = sensor_name
        # EHLO name: the sensor's name when it is a host name (never a blocking getfqdn())
        self.local_hostname = next((n for n in (sensor_name, socket.gethostname()) if _HOSTNAME.match(n)), "localhost")
        self.password = settings.password
        if settings.password_file:
            try:
                self.password = Path(settings.password_file).read_text("utf-8").strip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"email.password_file: cannot read {settings.password_file}: {getattr(exc, 'strerror', None) or exc}") from None
        self.tls_context: ssl.SSLContext | None = None
        if self.tls or self.starttls:
            try:
                self.tls_context = ssl.create_default_context(cafile=settings.ca_file or None)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"email.ca_file: cannot load {settings.ca_file}: {exc}") from None

    def build(self, item: tuple[str, dict[str, Any]]) -> EmailMessage:
        kind, payload = item
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg["Date"] = email.utils.formatdate(localtime=False)
        msg["Message-ID"] = email.utils.make_msgid(domain=self.sender.rpartition("@")[2] or "localhost")
        msg["X-Mailer"] = f"honeyjet {__version__}"
        if kind == "digest":
            msg["Subject"] = digest_subject(payload)
            msg.set_content(digest_text(payload))
        else:
            msg["Subject"] = alert_subject(payload)
            msg.set_content("honeyjet alert\n\n" + "\n".join(alert_lines(payload)) + "\n")
        return msg

    async def deliver(self, item: tuple[str, dict[str, Any]]) -> None:
        if item[0] == "event":
            return  # mail takes alerts and digests only
        await aiosmtplib.send(
            self.build(item),
            sender=self.sender,
            recipients=self.recipients,
            hostname=self.host,
            port=self.port,
            username=self.username or None,
            password=(self.password or None) if self.username else None,
            use_tls=self.tls,
            start_tls=self.starttls,  # True: required (fails without it); False: never
            tls_context=self.tls_context,
            local_hostname=self.local_hostname,
            timeout=self.timeout,
        )
