"""An app module that sets the collector's thresholds itself at import, as a deployment that
tuned them would: threadloom must keep them (``--gc-threshold`` yields to the app)."""

from __future__ import annotations

import gc

from tests.ops.ops_apps import young_threshold as app

gc.set_threshold(1234, 10, 10)

__all__ = ["app"]
