"""Logging set-up for the command line and ``threadloom.serve`` (libraries never call it).

Without ``--log-config``: threadloom's loggers write to stderr at ``--log-level``; with
``--access-log-format json`` the ``threadloom.access`` logger gets a handler of its own that
writes the bare message, so each access line is one JSON object and nothing else.

With ``--log-config FILE`` the file rules instead (handlers, formats, levels; ``--log-level``
is not applied): ``.json`` is a ``logging.config.dictConfig`` dictionary, ``.yaml``/``.yml``
one too (needs PyYAML), anything else an ``.ini`` file for ``logging.config.fileConfig``.
Loggers that exist already (threadloom's own) stay enabled unless the file says otherwise:
``disable_existing_loggers`` defaults to false, since silencing the server is never what a
log file means to do.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import sys
from typing import Any

from threadloom.errors import ConfigError

FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str, log_config: str = "", access_format: str = "common") -> None:
    """Send threadloom's logs to stderr at ``level``, once; or apply ``log_config``."""
    if log_config:
        load_log_config(log_config)
        return
    _access_handler(access_format == "json")
    root = logging.getLogger("threadloom")
    root.setLevel(level.upper())
    if not any(getattr(h, "_threadloom", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT, "%Y-%m-%d %H:%M:%S"))
        handler._threadloom = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.propagate = False


def _access_handler(bare: bool) -> None:
    """Give ``threadloom.access`` a bare-message handler of its own (JSON lines), or not."""
    access = logging.getLogger("threadloom.access")
    mine = [h for h in access.handlers if getattr(h, "_threadloom", False)]
    if bare and not mine:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._threadloom = True  # type: ignore[attr-defined]
        access.addHandler(handler)
    elif not bare:
        for old in mine:
            access.removeHandler(old)
    access.propagate = not bare


def load_log_config(path: str) -> None:
    """Apply a logging configuration file (see the module docstring); ConfigError if bad."""
    if not os.path.isfile(path):
        raise ConfigError(f"--log-config: {path}: no such file")
    try:
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as file:
                _dict_config(json.load(file))
        elif path.endswith((".yaml", ".yml")):
            _dict_config(_load_yaml(path))
        else:
            logging.config.fileConfig(path, disable_existing_loggers=False)
    except ConfigError:
        raise
    except Exception as exc:  # dictConfig/fileConfig raise anything from ValueError to KeyError
        raise ConfigError(f"--log-config: {path}: {exc}") from None


def _dict_config(data: Any) -> None:
    if not isinstance(data, dict):
        raise ConfigError("--log-config: the file must hold a dictConfig dictionary")
    data.setdefault("disable_existing_loggers", False)
    logging.config.dictConfig(data)


def _load_yaml(path: str) -> Any:
    try:
        import yaml  # type: ignore[import-untyped]  # noqa: PLC0415 - optional
    except ImportError:
        raise ConfigError("--log-config: a .yaml file needs PyYAML (pip install pyyaml)") from None
    with open(path, encoding="utf-8") as file:
        return yaml.safe_load(file)
