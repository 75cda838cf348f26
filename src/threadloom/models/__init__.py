"""Model registry: names to classes, imported lazily (``--model``)."""

from __future__ import annotations

import importlib

from threadloom.models.base import Model

MODELS = {
    "single": "threadloom.models.single:SingleModel",
    "threads": "threadloom.models.threads:ThreadsModel",
    "pool": "threadloom.models.pool:PoolModel",
    "asyncio": "threadloom.models.aio:AsyncioModel",
}


def model_class(name: str) -> type[Model]:
    """The model class registered under ``name``."""
    module_name, _, attr = MODELS[name].partition(":")
    cls: type[Model] = getattr(importlib.import_module(module_name), attr)
    return cls
