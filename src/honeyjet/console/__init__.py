"""The analyst console: a login-protected web UI over the event database (``honeyjet console``)."""
