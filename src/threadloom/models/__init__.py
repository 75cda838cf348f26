"""Model registry: names to classes, imported lazily (``--model``), and what each can do.

The names are :data:`threadloom.config.MODELS` (settings sit below the models in the import
layers, so the one list lives there). What differs between models is declared on each class
(:class:`~threadloom.models.base.Model`'s capabilities) and asked of it here; code outside
``models/`` never compares model names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from threadloom.config import MODELS
from threadloom.models.base import Model

__all__ = ["MODELS", "Model", "model_class", "model_flags", "models_where"]


def model_class(name: str) -> type[Model]:
    """The model class registered under ``name``."""
    module_name, _, attr = MODELS[name].partition(":")
    cls: type[Model] = getattr(importlib.import_module(module_name), attr)
    return cls


def models_where(test: Callable[[type[Model]], bool]) -> tuple[str, ...]:
    """The names of the models whose class passes ``test``, in registry order."""
    return tuple(name for name in MODELS if test(model_class(name)))


def model_flags(names: tuple[str, ...]) -> str:
    """``--model a`` or ``--model a or --model b``: the choices, as a message names them."""
    return " or ".join(f"--model {name}" for name in names)
