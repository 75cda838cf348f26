"""threadloom: write a server handler once, run it under any concurrency model."""

from __future__ import annotations

__version__ = "0.1.0"

from threadloom.config import Config
from threadloom.interfaces.websocket import WSGIWithWebSocket
from threadloom.server import Server, serve

__all__ = ["Config", "Server", "WSGIWithWebSocket", "__version__", "serve"]
