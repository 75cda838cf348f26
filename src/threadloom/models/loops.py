"""Event loop registry: ``--loop auto|asyncio|uvloop``, imported lazily so uvloop stays optional."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable

from threadloom.errors import ConfigError

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(name: str) -> tuple[str, LoopFactory]:
    """The loop's name and a factory for it; ``auto`` takes uvloop when installed."""
    if name in ("auto", "uvloop"):
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            if name == "uvloop":
                raise ConfigError(
                    "--loop uvloop: uvloop is not installed (pip install 'threadloom[fast]')"
                ) from None
        else:
            return "uvloop", uvloop.new_event_loop
    return "asyncio", asyncio.new_event_loop
