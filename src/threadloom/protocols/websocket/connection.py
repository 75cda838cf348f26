"""One WebSocket connection after the handshake: bytes in, events out; messages to bytes.

Theory of operation
-------------------
State, all changed only by this object's methods:

* ``state``: ``OPEN``; ``CLOSING`` once *we* sent a Close and await the peer's; ``CLOSED``
  once the closing handshake is complete, failed, or the peer vanished. ``close_code`` and
  ``close_reason`` then say why: the peer's Close (1005 when it carried no code), the code
  we failed the connection with (1002, 1007, 1009), or 1006 for an EOF without a Close.
* the receive side: ``_tail``, bytes of a frame head not complete yet (at most one control
  frame: data payloads are consumed as they arrive, so nothing large is buffered); the
  message being assembled (``_msg_op``, its parts, its size so far, whether it is
  compressed); and a data frame whose payload is still arriving (``_left`` bytes, its key).
* ``_out``: frames the protocol owes the peer (Pong, the echoed or failing Close).

The driver's obligations:

1. Feed every byte read to :meth:`receive_data` (``b""`` at EOF).
2. Send :meth:`data_to_send` at once, *before* handing the events to the app: it may hold a
   Pong or a Close even when no event came, and a Pong must precede replies to messages
   that arrived after its Ping (Autobahn 5.6, 5.19).
3. Once ``closed`` is true, nothing more is parsed and the app can no longer send: close
   the socket once that Close is out (the server closes TCP first, RFC 6455 7.1.1).
   Messages that arrived in the same read as a peer's Close or violation are still
   delivered, but cannot be answered (the Close went first: Autobahn grades the
   violation cases NON-STRICT, as for most servers).
4. Send what :meth:`send_message`, :meth:`send_ping`, :meth:`send_pong` and
   :meth:`send_close` return, in the order they were called; calls on one connection
   must not overlap (one lock, or one owner, per connection).
5. After :meth:`send_close`, keep reading until ``closed`` (the peer's Close) or a timeout.

Peer violations never raise: they queue a Close with 1002 (protocol), 1007 (bad UTF-8 or
compressed data) or 1009 (too big) and move to ``CLOSED``. Sending a message after our
Close, or once ``CLOSED``, raises :class:`LocalProtocolError` (the app's mistake); a Ping,
Pong or Close then returns ``b""`` (nothing may follow a Close), so a heartbeat timer or a
second close needs no check.

Receive path, in order of cost: a whole unfragmented uncompressed frame is unmasked with
one call and decoded with one ``bytes.decode`` (the fast path); anything else streams its
payload through :meth:`_payload`, which inflates within the size limit, decodes UTF-8
incrementally (failing at the first bad byte) and assembles the message.
"""

from __future__ import annotations

import codecs
from typing import Any

from threadloom.errors import LocalProtocolError
from threadloom.protocols.websocket.deflate import DeflateParams, MessageDeflater, MessageInflater
from threadloom.protocols.websocket.events import (
    CloseReceived,
    ConnectionState,
    Event,
    Message,
    Ping,
    Pong,
)
from threadloom.protocols.websocket.frames import (
    SMALL_HEADS,
    CloseCode,
    Opcode,
    Violation,
    close_code_allowed,
    close_payload,
    encode_frame,
    frame_head,
    head_error,
    parse_close,
    reject_surrogate,
    rotate_mask,
    unmask,
)

__all__ = [
    "CloseCode",
    "CloseReceived",
    "ConnectionState",
    "Event",
    "Message",
    "Opcode",
    "Ping",
    "Pong",
    "WebSocketConnection",
]


_OPEN, _CLOSING, _CLOSED = ConnectionState.OPEN, ConnectionState.CLOSING, ConnectionState.CLOSED
_TEXT = Opcode.TEXT.value
_UTF8 = codecs.getincrementaldecoder("utf-8")
_SMALL_HEADS = SMALL_HEADS
#: First bytes valid whatever the message state; RSV1 ones are added with permessage-deflate.
_PLAIN_B0 = frozenset({0x00, 0x80, 0x01, 0x81, 0x02, 0x82, 0x88, 0x89, 0x8A})
_DEFLATE_B0 = _PLAIN_B0 | {0x41, 0xC1, 0x42, 0xC2}
#: 1005 stands for "no code": received, an empty Close payload; sent, the same.
_NO_CODE = CloseCode.NO_STATUS.value
#: Pieces of a message kept apart before the newest are joined into one: a flood of tiny
#: fragments then costs about what the message weighs, not ~40 times more in small objects.
_PACK = 256


class WebSocketConnection:
    """The sans-I/O core of one WebSocket connection (module docstring)."""

    __slots__ = (
        "_close_sent",
        "_compress_min",
        "_decoder",
        "_deflater",
        "_failed",
        "_frame_fin",
        "_frame_mask",
        "_inflater",
        "_left",
        "_mask_in",
        "_mask_out",
        "_max",
        "_msg_op",
        "_msg_packed",
        "_msg_parts",
        "_msg_size",
        "_msg_texts",
        "_msg_z",
        "_out",
        "_reading",
        "_tail",
        "_valid_b0",
        "close_code",
        "close_reason",
        "state",
    )

    def __init__(
        self,
        *,
        max_message_size: int = 1 << 20,
        deflate: DeflateParams | None = None,
        is_client: bool = False,
        compress_min_size: int = 128,
    ) -> None:
        """``compress_min_size``: smaller messages go uncompressed (RFC 7692 allows mixing);
        deflating a few bytes costs more CPU than the bytes it saves."""
        self.state = _OPEN
        self.close_code: int | None = None
        self.close_reason = ""
        self._max = max_message_size
        self._mask_in = 0 if is_client else 0x80  # a server only accepts masked frames
        self._mask_out = is_client
        self._tail = b""
        self._out: list[bytes] = []
        self._reading = True
        self._close_sent = False
        self._failed = False
        self._msg_op = 0
        self._msg_parts: list[bytes] = []
        self._msg_texts: list[str] = []
        self._msg_packed = 0  # pieces of the message at the front of its list already packed
        self._msg_size = 0
        self._msg_z = False
        self._decoder = _UTF8()
        self._left = 0
        self._frame_fin = False
        self._frame_mask = b""
        self._compress_min = compress_min_size
        self._deflater: MessageDeflater | None = None
        self._inflater: MessageInflater | None = None
        self._valid_b0 = _PLAIN_B0
        if deflate is not None:
            self._setup_deflate(deflate, is_client)

    def _setup_deflate(self, p: DeflateParams, is_client: bool) -> None:
        """Each side compresses with its own parameters and inflates with the peer's."""
        server = (p.server_max_window_bits, p.server_no_context_takeover)
        client = (p.client_max_window_bits, p.client_no_context_takeover)
        mine, theirs = (client, server) if is_client else (server, client)
        self._deflater = MessageDeflater(*mine)
        self._inflater = MessageInflater(*theirs)
        self._valid_b0 = _DEFLATE_B0

    @property
    def closed(self) -> bool:
        """True once the driver should send what is queued and close the socket."""
        return self.state is _CLOSED

    @property
    def close_sent(self) -> bool:
        """True once a Close frame was produced (by :meth:`send_close` or by the core)."""
        return self._close_sent

    @property
    def failed(self) -> bool:
        """True when *we* failed the connection because the peer broke the protocol."""
        return self._failed

    # -- receiving ---------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Parse ``data`` (``b""`` = EOF) into events; see the module docstring."""
        if not self._reading:
            return []
        if not data:
            self._on_eof()
            return []
        if self._tail:
            data = self._tail + data
        elif type(data) is not bytes:
            data = bytes(data)
        events: list[Event] = []
        try:
            pos = self._parse(data, events)
        except Violation as exc:
            self._fail(exc.code, exc.reason)
            return events
        self._tail = data[pos:] if self._reading and pos < len(data) else b""
        return events

    def _parse(self, src: bytes, events: list[Event]) -> int:
        """Consume whole frames and partial data payloads; return where parsing stopped.

        Inline here is only what every frame pays for, and the fast path: a whole, final,
        uncompressed text or binary frame that is not part of a fragmented message.
        """
        pos = 0
        end = len(src)
        while pos < end and self._reading:
            if self._left:
                pos = self._more_payload(src, pos, end, events)
                continue
            if end - pos < 2:
                break
            b0 = src[pos]
            b1 = src[pos + 1]
            if b0 not in self._valid_b0 or b1 & 0x80 != self._mask_in:
                self._bad_head(b0)
            length = b1 & 0x7F
            head = pos + 2
            if length > 125:
                extended = _extended_length(src, head, end, b0, length)
                if extended is None:
                    break
                length, head = extended
            mask = b""
            if self._mask_in:
                if end - head < 4:
                    break
                mask = src[head : head + 4]
                head += 4
            stop = head + length
            if stop > end:  # a data payload is consumed as it comes; a control one waits
                if b0 & 8:
                    break
                chunk = src[head:end]
                self._data_frame(
                    b0,
                    length,
                    stop - end,
                    mask,
                    unmask(chunk, mask) if mask and chunk else chunk,
                    events,
                )
                pos = end
                continue
            payload = unmask(src[head:stop], mask) if mask and length else src[head:stop]
            pos = stop
            if b0 & 8:
                self._control(b0 & 0x0F, payload, events)
            elif b0 & 3 and b0 & 0xC0 == 0x80 and not self._msg_op:  # the fast path
                if length > self._max:
                    raise Violation(CloseCode.TOO_BIG, "message too big")
                if b0 & 1:
                    try:
                        events.append(Message(payload.decode()))
                    except UnicodeDecodeError:
                        raise Violation(CloseCode.INVALID_DATA, "invalid UTF-8") from None
                else:
                    events.append(Message(payload))
            else:
                self._data_frame(b0, length, 0, mask, payload, events)
        return pos

    def _bad_head(self, b0: int) -> None:
        """Raise for a first byte or MASK bit that no message state makes valid."""
        if b0 not in self._valid_b0:
            raise Violation(CloseCode.PROTOCOL_ERROR, head_error(b0, self._inflater is not None))
        raise Violation(CloseCode.PROTOCOL_ERROR, "frame masking is wrong for its direction")

    def _data_frame(
        self, b0: int, length: int, missing: int, mask: bytes, chunk: bytes, events: list[Event]
    ) -> None:
        """A data frame off the fast path: its message state, and its first piece."""
        opcode = b0 & 0x0F
        if opcode:
            if self._msg_op:
                raise Violation(CloseCode.PROTOCOL_ERROR, "new message inside a fragmented one")
            self._begin_message(opcode, b0 & 0x40)
        elif not self._msg_op:
            raise Violation(CloseCode.PROTOCOL_ERROR, "continuation frame without a message")
        self._begin_frame(length, missing, b0 & 0x80, mask, len(chunk))
        self._payload(chunk, events)

    def _begin_message(self, opcode: int, compressed: int) -> None:
        self._msg_op = opcode
        self._msg_size = 0
        self._msg_z = bool(compressed)
        if opcode == _TEXT:
            self._decoder.reset()

    def _begin_frame(self, length: int, missing: int, fin: int, mask: bytes, got: int) -> None:
        """Account for a data frame whose head is parsed and ``got`` payload bytes are here."""
        if not self._msg_z:  # uncompressed: the declared length counts at once (fail fast)
            self._msg_size += length
            if self._msg_size > self._max:
                raise Violation(CloseCode.TOO_BIG, "message too big")
        self._left = missing
        self._frame_fin = bool(fin)
        if missing and mask:
            self._frame_mask = rotate_mask(mask, got)

    def _more_payload(self, src: bytes, pos: int, end: int, events: list[Event]) -> int:
        """The next piece of a data frame whose payload is still arriving."""
        take = min(self._left, end - pos)
        chunk = src[pos : pos + take]
        mask = self._frame_mask
        if mask:
            chunk = unmask(chunk, mask)
            self._frame_mask = rotate_mask(mask, take)
        self._left -= take
        self._payload(chunk, events)
        return pos + take

    def _payload(self, chunk: bytes, events: list[Event]) -> None:
        """One piece of the current message's payload, in order; completes it at the end."""
        last = not self._left and self._frame_fin
        if self._msg_z:
            chunk = self._inflate(chunk, last)
        if self._msg_op == _TEXT:
            try:
                text = self._decoder.decode(chunk, last)
            except UnicodeDecodeError:
                raise Violation(CloseCode.INVALID_DATA, "invalid UTF-8") from None
            if not last:
                reject_surrogate(self._decoder.getstate()[0])
            if text:
                self._msg_texts.append(text)
                if len(self._msg_texts) - self._msg_packed >= _PACK:
                    self._pack(self._msg_texts, "")
        elif chunk:
            self._msg_parts.append(chunk)
            if len(self._msg_parts) - self._msg_packed >= _PACK:
                self._pack(self._msg_parts, b"")
        if last:
            if self._msg_op == _TEXT:
                events.append(Message("".join(self._msg_texts)))
                self._msg_texts = []
            else:
                events.append(Message(b"".join(self._msg_parts)))
                self._msg_parts = []
            self._msg_op = 0
            self._msg_packed = 0

    def _pack(self, parts: list[Any], empty: Any) -> None:
        """Join the pieces that arrived since the last pack into one (each byte is joined
        at most twice: here, and when the message completes)."""
        start = self._msg_packed
        parts[start:] = [empty.join(parts[start:])]
        self._msg_packed = start + 1

    def _inflate(self, chunk: bytes, last: bool) -> bytes:
        """Decompress a piece within the room left under the size limit (deflate bombs)."""
        inflater = self._inflater
        assert inflater is not None  # RSV1 is only accepted with permessage-deflate
        room = self._max - self._msg_size
        out = inflater.feed(chunk, room) if chunk else b""
        if last:
            out += inflater.finish(room - len(out))
        self._msg_size += len(out)
        return out

    def _control(self, opcode: int, payload: bytes, events: list[Event]) -> None:
        if opcode == Opcode.PING:
            events.append(Ping(payload))
            if self.state is _OPEN:
                self._out.append(encode_frame(0x8A, payload, self._mask_out))
        elif opcode == Opcode.PONG:
            events.append(Pong(payload))
        else:
            code, reason = parse_close(payload)
            events.append(CloseReceived(code, reason))
            self._closed_by_peer(code, reason)

    def _closed_by_peer(self, code: int, reason: str) -> None:
        """The peer's Close: echo its code unless we sent ours first; the handshake is done."""
        self.close_code = code
        self.close_reason = reason
        if not self._close_sent:
            self._queue_close(code, "")
        self._end()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 7.1.7): a Close with ``code`` if none was sent yet."""
        self._failed = True
        self.close_code = code
        self.close_reason = reason
        if not self._close_sent:
            self._queue_close(code, reason[:120])
        self._end()

    def _on_eof(self) -> None:
        if self.state is not _CLOSED and self.close_code is None:
            self.close_code = CloseCode.ABNORMAL
        self._end()

    def _end(self) -> None:
        """Nothing more will be parsed: drop what was being assembled, free the buffers."""
        self.state = _CLOSED
        self._reading = False
        self._tail = b""
        self._msg_parts = []
        self._msg_texts = []
        self._msg_packed = 0
        self._msg_op = 0
        self._left = 0

    def _queue_close(self, code: int, reason: str) -> None:
        self._out.append(encode_frame(0x88, close_payload(code, reason), self._mask_out))
        self._close_sent = True

    # -- sending ------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Every frame the protocol queued (Pong, Close), oldest first; empties the queue."""
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def send_message(self, data: str | bytes) -> bytes:
        """One frame carrying the whole message (text for ``str``, binary otherwise)."""
        if self._close_sent or self.state is _CLOSED:
            raise LocalProtocolError("cannot send a message on a closed WebSocket")
        if isinstance(data, str):
            b0 = 0x81
            try:
                payload = data.encode()
            except UnicodeEncodeError:
                raise LocalProtocolError("text message is not valid Unicode") from None
        else:
            b0 = 0x82
            payload = bytes(data)
        deflater = self._deflater
        if deflater is not None and len(payload) >= self._compress_min:
            payload = deflater.compress(payload)
            b0 |= 0x40
        if self._mask_out:
            return encode_frame(b0, payload, True)
        n = len(payload)
        if n < 126:
            return _SMALL_HEADS[b0][n] + payload
        return frame_head(b0, n) + payload

    def send_ping(self, payload: bytes = b"") -> bytes:
        """A Ping frame (``b""`` once our Close is sent)."""
        return self._control_frame(0x89, payload)

    def send_pong(self, payload: bytes = b"") -> bytes:
        """An unsolicited Pong, a heartbeat (``b""`` once our Close is sent)."""
        return self._control_frame(0x8A, payload)

    def _control_frame(self, b0: int, payload: bytes) -> bytes:
        if len(payload) > 125:
            raise LocalProtocolError("control frame payloads are limited to 125 bytes")
        if self._close_sent or self.state is _CLOSED:
            return b""
        return encode_frame(b0, bytes(payload), self._mask_out)

    def send_close(self, code: int = CloseCode.NORMAL, reason: str = "") -> bytes:
        """Our Close frame; the state becomes CLOSING (``b""`` if a Close was already sent).

        ``code`` 1005 sends a Close without a code (and then no reason). Codes that may not
        be sent (1004-1006 but that, 1015, reserved ranges) and reasons over 123 UTF-8
        bytes raise :class:`LocalProtocolError`.
        """
        if code != _NO_CODE and not close_code_allowed(code):
            raise LocalProtocolError(f"close code {code} may not be sent")
        payload = close_payload(code, reason)
        if len(payload) > 125 or (code == _NO_CODE and reason):
            raise LocalProtocolError("close reason too long (123 UTF-8 bytes at most)")
        if self._close_sent or self.state is _CLOSED:
            return b""  # one Close at most, and none once the peer is gone
        self._close_sent = True
        if self.state is _OPEN:
            self.state = _CLOSING
        return encode_frame(0x88, payload, self._mask_out)


def _extended_length(src: bytes, head: int, end: int, b0: int, code: int) -> tuple[int, int] | None:
    """A 16- or 64-bit payload length (``code`` 126 or 127) and where the head goes on;
    None when those bytes have not arrived yet."""
    if b0 & 8:
        raise Violation(CloseCode.PROTOCOL_ERROR, "control frame over 125 bytes")
    if code == 126:
        if end - head < 2:
            return None
        return (src[head] << 8) | src[head + 1], head + 2
    if end - head < 8:
        return None
    length = int.from_bytes(src[head : head + 8], "big")
    if length >> 63:
        raise Violation(CloseCode.PROTOCOL_ERROR, "frame length over 2**63")
    return length, head + 8
