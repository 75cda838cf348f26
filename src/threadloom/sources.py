"""Where settings come from, and which one wins: the one place that merges them.

Four layers, lowest first: the defaults of :class:`~threadloom.config.Config`, a config file,
the ``THREADLOOM_*`` environment, the command-line flags. A higher layer replaces a setting
of a lower one whole (a ``bind`` list from the environment replaces the file's, it does not
add to it). Sockets from systemd socket activation stand in for ``bind`` when neither a flag
nor the environment names an address, so they win over a file's ``bind`` too.

The config file is TOML, read with the stdlib's ``tomllib``. Which file (:func:`find_file`):
``--config FILE``, else ``THREADLOOM_CONFIG``, else ``./pyproject.toml`` when it has a
``[tool.threadloom]`` table; ``--no-config`` (or an empty ``THREADLOOM_CONFIG``) reads none.
A file named ``pyproject.toml`` holds its settings in ``[tool.threadloom]``, any other file at
its top level. Keys are the long flags without ``--`` (``max-connections``); a boolean flag's
key is its positive name (``access-log = false`` for ``--no-access-log``). Values must have
the setting's type already (TOML has them all): nothing is parsed from a string, unlike in
the environment. Every mistake is one :class:`ConfigError` line naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from threadloom.config import Config, env_name, flag_name, from_environ
from threadloom.errors import ConfigError

PYPROJECT = "pyproject.toml"
CONFIG_ENV = "THREADLOOM_CONFIG"
FIELDS = {flag_name(f): f for f in dataclasses.fields(Config)}
DEFAULT = "default"
FLAG = "flag"
ACTIVATION = "socket activation (LISTEN_FDS)"


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """One config file's settings, checked: field name -> value."""

    path: Path
    label: str  # how messages and ``threadloom config`` name it: the path as given, + table
    values: Mapping[str, Any]
    chosen_by: (
        str  # "given by --config", "given by THREADLOOM_CONFIG", "found in the current folder"
    )


@dataclass(frozen=True, slots=True)
class Resolved:
    """The effective config, and where each setting came from (field name -> source)."""

    config: Config
    sources: Mapping[str, str]
    file: ConfigFile | None


def find_file(
    given: str | None, environ: Mapping[str, str], cwd: Path | None = None
) -> ConfigFile | None:
    """The config file to read: ``given`` (``--config``; ``""`` for ``--no-config``), else
    ``THREADLOOM_CONFIG``, else ``./pyproject.toml`` if it has ``[tool.threadloom]``."""
    if given is None and CONFIG_ENV in environ:
        given, chosen_by = environ[CONFIG_ENV], f"given by {CONFIG_ENV}"
    else:
        chosen_by = "given by --config"
    if given == "":
        return None
    if given is not None:
        path = Path(given)
        return read_file(path, given, chosen_by, table_required=True)
    path = (cwd or Path.cwd()) / PYPROJECT
    if not path.is_file():
        return None
    return read_file(path, PYPROJECT, "found in the current folder", table_required=False)


def read_file(path: Path, name: str, chosen_by: str, *, table_required: bool) -> ConfigFile | None:
    """Parse and check one file; None for a pyproject.toml without our table (when allowed)."""
    try:
        with path.open("rb") as f:
            document = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read the config file: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name}: not valid TOML: {exc}") from None
    table: Any = document
    label = name
    if path.name == PYPROJECT:
        tool = document.get("tool")
        table = tool.get("threadloom") if isinstance(tool, dict) else None
        label = f"{name} [tool.threadloom]"
        if table is None:
            if table_required:
                raise ConfigError(f"{name}: no [tool.threadloom] table")
            return None
        if not isinstance(table, dict):
            raise ConfigError(f"{label}: tool.threadloom must be a table")
    return ConfigFile(path, label, check(table, label), chosen_by)


def check(table: Mapping[str, Any], label: str) -> dict[str, Any]:
    """Keys and types of a file's settings -> field name -> value, or one-line ConfigError."""
    values = {}
    for key, value in table.items():
        f = FIELDS.get(key)
        if f is None:
            raise ConfigError(f"{label}: unknown setting {key!r}{_hint(key, value)}")
        values[f.name] = _typed(f, key, value, label)
    return values


def _hint(key: str, value: Any) -> str:
    """What the user probably meant, for an unknown key."""
    plain = key.removeprefix("--").replace("_", "-")
    if plain in FIELDS:
        return f" (keys are spelled as the flags, without --: {plain!r})"
    positive = plain.removeprefix("no-")
    if positive in FIELDS and isinstance(value, bool):
        return f" (write {positive} = {'false' if value else 'true'})"
    close = difflib.get_close_matches(plain, FIELDS, n=1)
    return f" (did you mean {close[0]!r}?)" if close else " (see threadloom serve --help)"


_TOML_TYPES = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
_TOML_TYPES |= {list: "an array", dict: "a table"}


def _toml_type(value: Any) -> str:
    """``a string ("4")``: the TOML type of a wrong value, and the value when it is short."""
    kind = _TOML_TYPES.get(type(value), "a date or time")
    shown = toml_value(value) if type(value) in (bool, int, float, str) else ""
    return f"{kind} ({shown})" if shown and len(shown) <= 40 else kind


def _typed(f: dataclasses.Field[Any], key: str, value: Any, label: str) -> Any:
    """``value`` as the field's type, if TOML gave it that type (ints do for floats)."""
    kind = str(f.type)
    if kind.startswith("tuple"):
        items = [value] if isinstance(value, str) else value
        if isinstance(items, list) and all(isinstance(item, str) for item in items):
            return tuple(items)
        wanted = "a string or an array of strings"
    else:
        expected = {"bool": bool, "int": int, "float": float, "str": str}[kind]
        if expected is float and type(value) is int:
            return float(value)
        if type(value) is not expected:  # not isinstance: True is an int to Python, not TOML
            wanted = _TOML_TYPES[expected]
        elif (choices := f.metadata.get("choices")) and value not in choices:
            raise ConfigError(f"{label}: {key} = {value!r} is not one of {', '.join(choices)}")
        else:
            return value
    raise ConfigError(f"{label}: {key} must be {wanted}, not {_toml_type(value)}")


def resolve(
    flags: Mapping[str, Any],
    environ: Mapping[str, str],
    file: ConfigFile | None,
    activated: Callable[[], tuple[str, ...]] = tuple,
) -> Resolved:
    """Merge the layers (flag > environment > socket activation > file > default), validate.

    ``flags`` holds only the flags given (field name -> value). ``activated`` is called only
    when no flag or environment variable names an address.
    """
    from_env = from_environ(environ)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if file is not None:
        values |= file.values
        sources |= dict.fromkeys(file.values, file.label)
    if "bind" not in flags and "bind" not in from_env and (binds := activated()):
        values["bind"], sources["bind"] = binds, ACTIVATION
    fields = {f.name: f for f in dataclasses.fields(Config)}
    values |= from_env
    sources |= {name: f"env {env_name(fields[name])}" for name in from_env}
    values |= flags
    sources |= dict.fromkeys(flags, FLAG)
    try:
        config = Config(**values).validated()
    except ConfigError as exc:
        raise ConfigError(_blame(str(exc), sources)) from None
    return Resolved(config, {name: sources.get(name, DEFAULT) for name in fields}, file)


def _blame(message: str, sources: Mapping[str, str]) -> str:
    """A validation message, plus where the settings it names came from (unless flags)."""
    named = dict.fromkeys(flag.replace("-", "_") for flag in re.findall(r"--([a-z0-9-]+)", message))
    where = [
        f"{name.replace('_', '-')} from {sources[name]}"
        for name in named
        if sources.get(name, FLAG) != FLAG
    ]
    return f"{message} ({'; '.join(where)})" if where else message


def toml_value(value: Any) -> str:
    """A value as TOML writes it, so a line of the table can be pasted into a file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def describe(resolved: Resolved) -> str:
    """``threadloom config``'s report: the file read, then setting | value | from."""
    file = resolved.file
    if file is None:
        head = "config file: none"
    else:
        head = f"config file: {file.label} ({file.chosen_by}; {file.path.resolve()})"
    rows = [("setting", "value", "from")]
    for f in dataclasses.fields(Config):
        value = toml_value(getattr(resolved.config, f.name))
        rows.append((flag_name(f), value, resolved.sources[f.name]))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}" for a, b, c in rows]
    return "\n".join([head, "", *lines])
