"""Pick the service for an app: the join between an interface and the engine."""

from __future__ import annotations

from threadloom.config import Config
from threadloom.engine.raw import RawService
from threadloom.engine.session import Service
from threadloom.errors import ConfigError
from threadloom.loading import LoadedApp


def build_service(loaded: LoadedApp, config: Config) -> Service:
    """The service that serves ``loaded`` under ``config``, or ConfigError if none can."""
    if loaded.interface == "raw":
        return RawService(loaded)
    raise ConfigError(f"the {loaded.interface} interface is not available in this version")
