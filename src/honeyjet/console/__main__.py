"""``python -m honeyjet.console [--data-dir DIR] …`` is ``honeyjet console …``."""

from honeyjet.console.cli import main

raise SystemExit(main())
