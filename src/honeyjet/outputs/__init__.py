"""Outputs: alert channels (syslog, webhook, email), Prometheus metrics, the block hook.

Each output is a small plugin enabled by its own config section. Outputs are event-bus
sinks or are fed by one: ``write()`` only enqueues into a bounded queue (a full queue
drops and counts), one task per output delivers with a timeout, and a failing output
logs, counts and goes on without touching the others or the event loop.

:func:`build_outputs` turns settings into the sinks the sensor adds to its bus.
"""

from __future__ import annotations

from typing import Any


def build_outputs(settings: Any, sensor: Any) -> list[Any]:
    """The output sinks the settings enable (imports only what is enabled)."""
    sinks: list[Any] = []
    if settings.metrics.enabled:
        from honeyjet.outputs.metrics import build_metrics

        sinks.append(build_metrics(settings, sensor))
    if settings.alerts.enabled or (settings.syslog.enabled and settings.syslog.all_events):
        from honeyjet.outputs.alerts import build_alerts

        sinks.extend(build_alerts(settings, sensor))
    if settings.block_hook.enabled:
        from honeyjet.outputs.blockhook import build_block_hook

        sinks.append(build_block_hook(settings, sensor))
    return sinks
