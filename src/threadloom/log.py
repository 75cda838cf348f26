"""Logging set-up for the command line and ``threadloom.serve`` (libraries never call it)."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """Send threadloom's logs to stderr at ``level``, once."""
    root = logging.getLogger("threadloom")
    root.setLevel(level.upper())
    if not any(getattr(h, "_threadloom", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT, "%Y-%m-%d %H:%M:%S"))
        handler._threadloom = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.propagate = False
