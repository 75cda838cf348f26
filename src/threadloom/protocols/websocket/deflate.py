"""permessage-deflate (RFC 7692): negotiating it in the handshake, and compressing messages.

Theory of operation
-------------------
Negotiation happens once, in the handshake. :func:`negotiate_deflate` reads the client's
``Sec-WebSocket-Extensions`` offers (RFC 6455 9.1 grammar: comma-separated extensions,
each with ``;``-separated parameters, values as tokens or quoted strings), takes the first
``permessage-deflate`` offer whose parameters are all valid, and returns the agreed
:class:`DeflateParams`; an offer with an unknown, repeated or malformed parameter is
declined (RFC 7692 5 and 7.1) and the next one is tried. ``DeflateParams.header_value()``
is our answer, which ``accept_response`` puts in the 101.

Afterwards each direction has one zlib stream, made lazily (an idle connection holds none):

* :class:`MessageDeflater` compresses a whole message and drops the trailing
  ``00 00 ff ff`` of the sync flush (RFC 7692 7.2.1). With no context takeover it uses a
  full flush, which empties the LZ77 window as a fresh compressor would, without paying
  for a new one per message.
* :class:`MessageInflater` decompresses a message in the pieces it arrives in, never
  producing more than the room the caller has left under ``max_message_size`` plus one
  byte, so a deflate bomb costs at most the limit in memory (:class:`Violation` 1009
  beyond it, 1007 for a corrupt stream). At the end of a message it appends the four
  bytes the sender removed; the stream is dropped when the peer resets its context each
  message (nothing to keep) or ended it with a BFINAL block.

Window bits: zlib cannot *compress* raw deflate with an 8-bit window (madler/zlib#171), so
an agreed ``server_max_window_bits=8`` compresses with 9 bits. That stays within the
promise: zlib never emits a distance above ``window - 262`` bytes, 250 with 9 bits, which a
256-byte window decodes. Decompression takes 8 as it is.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from threadloom.protocols.websocket.frames import CloseCode, Violation

_WINDOW_VALUES = {str(bits): bits for bits in range(8, 16)}
_FLAGS = ("server_no_context_takeover", "client_no_context_takeover")
_TAIL = b"\x00\x00\xff\xff"
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
# One lexeme at a time: a token, a quoted string, a separator, or one bad character.
_LEX = re.compile(
    r'[ \t]*(?:([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)|"((?:[^"\\]|\\.)*)"|([,;=])|([^ \t]))', re.S
)
_ESCAPE = re.compile(r"\\(.)", re.S)

Param = tuple[str, str | None]


@dataclass(frozen=True, slots=True)
class DeflateParams:
    """The agreed permessage-deflate parameters, from the server's point of view.

    Window sizes are 8..15 bits (see the module docstring for 8). ``state_server_bits`` and
    ``state_client_bits`` say whether our response must name the window size: RFC 7692
    7.1.2 requires it when the client's offer named it, and forbids
    ``client_max_window_bits`` when the offer did not.
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = 15
    client_max_window_bits: int = 15
    state_server_bits: bool = False
    state_client_bits: bool = False

    def header_value(self) -> bytes:
        """Our ``Sec-WebSocket-Extensions`` response value."""
        parts = [b"permessage-deflate"]
        if self.server_no_context_takeover:
            parts.append(b"server_no_context_takeover")
        if self.client_no_context_takeover:
            parts.append(b"client_no_context_takeover")
        if self.state_server_bits or self.server_max_window_bits != 15:
            parts.append(b"server_max_window_bits=%d" % self.server_max_window_bits)
        if self.state_client_bits or self.client_max_window_bits != 15:
            parts.append(b"client_max_window_bits=%d" % self.client_max_window_bits)
        return b"; ".join(parts)


def parse_extensions(value: bytes | str) -> list[tuple[str, list[Param]] | None]:
    """The offers in a ``Sec-WebSocket-Extensions`` value, in order; None for a malformed one.

    Names are lower-cased, quoted values unescaped. An unterminated quote ends the scan: what
    follows cannot be split into offers reliably (and a rescan per quote would be quadratic).
    """
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    offers: list[tuple[str, list[Param]] | None] = []
    element: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _LEX.match(text, pos)
        if match is None:  # only trailing blanks are left
            break
        pos = match.end()
        token, quoted, sep, bad = match.groups()
        if sep == ",":
            if element:
                offers.append(_parse_element(element))
            element = []
        elif bad is not None:
            element.append(("bad", bad))
            if bad == '"':
                break
        elif token is not None:
            element.append(("token", token))
        elif quoted is not None:
            element.append(("quoted", _ESCAPE.sub(r"\1", quoted)))
        else:
            element.append(("sep", sep))
    if element:
        offers.append(_parse_element(element))
    return offers


def _parse_element(lexemes: list[tuple[str, str]]) -> tuple[str, list[Param]] | None:
    """``name *( ";" param [ "=" value ] )`` from lexemes; None if it does not fit."""
    groups: list[list[tuple[str, str]]] = [[]]
    for lexeme in lexemes:
        if lexeme == ("sep", ";"):
            groups.append([])
        else:
            groups[-1].append(lexeme)
    head, *rest = groups
    if len(head) != 1 or head[0][0] != "token":
        return None
    params: list[Param] = []
    for group in rest:
        kinds = [kind for kind, _ in group]
        if kinds == ["token"]:
            params.append((group[0][1].lower(), None))
        elif kinds in (["token", "sep", "token"], ["token", "sep", "quoted"]):
            name, (_, eq), (_, val) = group[0][1], group[1], group[2]
            if eq != "=" or not _TOKEN.match(val):  # RFC 6455 9.1: unquoted it is a token
                return None
            params.append((name.lower(), val))
        else:
            return None
    return head[0][1].lower(), params


def negotiate_deflate(
    offer: bytes | str | None,
    *,
    enabled: bool = True,
    server_max_window_bits: int = 15,
    client_max_window_bits: int = 15,
) -> DeflateParams | None:
    """Accept the first acceptable permessage-deflate offer, or None (no compression).

    ``server_max_window_bits`` and ``client_max_window_bits`` (8..15) cap the windows we
    agree to, to save memory per connection; the client's window can only be capped when
    its offer says it supports that (``client_max_window_bits`` present).
    """
    if not enabled or not offer:
        return None
    for parsed in parse_extensions(offer):
        if parsed is None or parsed[0] != "permessage-deflate":
            continue
        params = _accept(parsed[1], server_max_window_bits, client_max_window_bits)
        if params is not None:
            return params
    return None


def _accept(params: list[Param], server_cap: int, client_cap: int) -> DeflateParams | None:
    """Our answer to one offer's parameters, or None to decline it (RFC 7692 7.1)."""
    seen: dict[str, str | None] = {}
    for name, value in params:
        if name in seen:
            return None  # a repeated parameter declines the offer
        if name in _FLAGS:
            if value is not None:
                return None
        elif name == "server_max_window_bits":
            if value not in _WINDOW_VALUES:
                return None
        elif name == "client_max_window_bits":
            if value is not None and value not in _WINDOW_VALUES:
                return None
        else:
            return None  # unknown parameter
        seen[name] = value
    server_bits = seen.get("server_max_window_bits")
    client_offered = "client_max_window_bits" in seen
    client_bits = seen.get("client_max_window_bits")
    client = 15
    if client_offered:
        client = min(_WINDOW_VALUES[client_bits] if client_bits else 15, client_cap)
    return DeflateParams(
        server_no_context_takeover="server_no_context_takeover" in seen,
        client_no_context_takeover="client_no_context_takeover" in seen,
        server_max_window_bits=min(_WINDOW_VALUES[server_bits] if server_bits else 15, server_cap),
        client_max_window_bits=client,
        state_server_bits=server_bits is not None,
        state_client_bits=client_bits is not None or client < 15,
    )


class MessageDeflater:
    """Compresses outgoing messages, one whole message per call (module docstring)."""

    __slots__ = ("_flush", "_wbits", "_zlib")

    def __init__(self, window_bits: int, no_context_takeover: bool) -> None:
        self._wbits = -max(window_bits, 9)  # zlib cannot compress raw deflate with 8 bits
        self._flush = zlib.Z_FULL_FLUSH if no_context_takeover else zlib.Z_SYNC_FLUSH
        self._zlib: zlib._Compress | None = None

    def compress(self, data: bytes) -> bytes:
        """The message's compressed payload, without the ``00 00 ff ff`` tail."""
        z = self._zlib
        if z is None:
            z = self._zlib = zlib.compressobj(wbits=self._wbits)
        out = z.compress(data) + z.flush(self._flush)
        return out[:-4]  # a sync or full flush always ends in an empty stored block


class MessageInflater:
    """Decompresses incoming messages piece by piece, bounded by the caller's room."""

    __slots__ = ("_reset", "_wbits", "_zlib")

    def __init__(self, window_bits: int, no_context_takeover: bool) -> None:
        # Always the largest window, whatever the peer promised: zlib checks a distance only
        # against the history it holds, so with a small window a peer breaking its promise
        # was accepted when a message arrived in one read and refused when it was cut
        # (found by tests/fuzz/ws_target.py). The limit on output applies either way.
        del window_bits
        self._wbits = -15
        self._reset = no_context_takeover
        self._zlib: zlib._Decompress | None = None

    def feed(self, data: bytes, room: int) -> bytes:
        """Decompress one piece of a message; :class:`Violation` if it needs more than ``room``."""
        z = self._zlib
        if z is None:
            z = self._zlib = zlib.decompressobj(wbits=self._wbits)
        elif z.eof:  # after a BFINAL block: zlib would pile later bytes up in unused_data
            return b""
        try:
            out = z.decompress(data, room + 1)  # max_length 0 would mean "no limit": +1
        except zlib.error:
            raise Violation(CloseCode.INVALID_DATA, "invalid compressed data") from None
        if len(out) > room:
            raise Violation(CloseCode.TOO_BIG, "message too big")
        return out

    def finish(self, room: int) -> bytes:
        """Flush the end of a message (the tail the sender removed) and settle the stream."""
        out = self.feed(_TAIL, room)
        z = self._zlib
        if self._reset or (z is not None and z.eof):
            self._zlib = None  # nothing to keep: free the window until the next message
        return out
