"""``--workers N``: a supervisor process and the workers it forks (see :mod:`.arbiter`)."""

from __future__ import annotations

from threadloom.supervisor.arbiter import Supervisor, run_supervised

__all__ = ["Supervisor", "run_supervised"]
