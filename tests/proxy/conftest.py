"""The throwaway CA of tests/tls, for PROXY headers in front of TLS."""

from tests.tls.conftest import tls  # noqa: F401 - a fixture, used by name
