"""The optional C fast paths (``_speedups.c``), or None for each when they are not in use.

They are off when the extension was not built (no compiler at install time) or when
``THREADLOOM_PURE_PYTHON=1`` is set; the pure-Python path then does all the work, with the
same results. Each C function returns None whenever it is not sure, and its caller then runs
the Python code, so nothing else needs to know which is in use.

The C code keeps no rule of Python's: the module that owns each table hands it over at
import (``bind_request`` from ``connection.py``, ``bind_response`` from ``response.py``),
and until then the C functions decline everything.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

from threadloom.protocols.http1.request import Request, RequestBody

parse_request: Callable[[bytes, int, int, int, int], tuple[Request, int] | None] | None = None
scan_headers: Callable[[Any], tuple[bytes, int | None, int] | None] | None = None
render_whole: Callable[[Any, int, bytes, Any, bytes], tuple[bytes, bool] | None] | None = None
ACTIVE = False
_extension: ModuleType | None = None

if os.environ.get("THREADLOOM_PURE_PYTHON", "") not in ("1", "true", "yes"):
    try:
        from threadloom.protocols.http1 import _speedups
    except ImportError:
        pass
    else:
        _speedups.bind_types(Request, RequestBody, collections.deque)
        parse_request = _speedups.parse_request
        scan_headers = _speedups.scan_headers
        render_whole = _speedups.render_whole
        ACTIVE = True
        _extension = _speedups


def bind_request(watched: Iterable[bytes]) -> None:
    """``connection.py`` hands over the field names it watches: the C parser leaves every
    field with one of them to Python (bar the plain case of ``host`` and ``content-length``)."""
    if _extension is not None:
        _extension.bind_request(watched)


def bind_response(**tables: Any) -> None:
    """``response.py`` hands over its tables (``_speedups.c``'s ``bind_response`` names them)."""
    if _extension is not None:
        _extension.bind_response(**tables)
