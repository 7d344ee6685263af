"""honeyjet: a network-printer honeypot and printer-threat analysis platform."""

__version__ = "0.1.0"
