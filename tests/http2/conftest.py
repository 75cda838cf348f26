"""Every HTTP/2 test runs once per core (``tests/h2cores.py``)."""

from tests.h2cores import each_h2_core  # noqa: F401 (a fixture: each test once per core)
