"""Errors split by fault, so each layer knows whose mistake it is handling.

* ``ConfigError``: the user's configuration or command line is wrong; the CLI prints its
  message on one line and exits non-zero, without a traceback.
* ``LocalProtocolError``: *we* (or the application we host) tried to do something the
  protocol forbids, such as a response header containing CR/LF. The engine answers 500
  when it still can, and logs it.
* ``RemoteProtocolError``: the *peer* broke the protocol. It carries ``status``, the HTTP
  status the engine should answer with (400, 408, 413, 414, 431, 501), before closing.
"""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration or command-line mistake, reported as one line to the user."""


class ProtocolError(Exception):
    """Base for protocol violations; ``status`` is a response hint for HTTP."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class LocalProtocolError(ProtocolError):
    """Our side (or the hosted app) broke the protocol."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message, status)


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol; ``status`` says how to answer before closing."""
