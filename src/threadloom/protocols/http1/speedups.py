"""The optional C fast paths (``_speedups.c``), or None for each when they are not in use.

They are off when the extension was not built (no compiler at install time) or when
``THREADLOOM_PURE_PYTHON=1`` is set; the pure-Python path then does all the work, with the
same results. Each C function returns None whenever it is not sure, and its caller then runs
the Python code, so nothing else needs to know which is in use.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable
from typing import Any

from threadloom.protocols.http1.request import Request, RequestBody

parse_request: Callable[[bytes, int, int, int, int], tuple[Request, int] | None] | None = None
scan_headers: Callable[[Any], tuple[bytes, int | None, int] | None] | None = None
render_whole: Callable[[Any, int, bytes, Any, bytes], bytes | None] | None = None
ACTIVE = False

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
