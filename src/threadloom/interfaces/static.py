"""Static files, served before the app: ``--static /prefix=DIR`` (repeatable).

Why here
--------
A small deployment should not need nginx or WhiteNoise in front to serve its CSS and
images. This module is the whole rule of it and is sans-I/O: a parsed request in, a
:class:`FileAnswer` out (the response head, and which bytes of an open file follow it). The
engine routes a request here when :meth:`StaticFiles.claims` it (``HTTP1Core.route``) and
sends the file the way it sends any large response: the kernel copies it (``os.sendfile``)
from the connection's outbox under the thread models, the loop reads it slice by slice
under asyncio, so a 1 GiB file costs a descriptor, never its size in memory, and a slow
reader holds no thread.

What a client gets: ``GET`` and ``HEAD`` (else 405), a content type from :mod:`mimetypes`,
``ETag`` and ``Last-Modified`` with ``If-None-Match`` / ``If-Modified-Since`` answered 304,
one byte range (206, or 416 when it cannot be satisfied; ``If-Range`` honoured; several
ranges get the whole file, as RFC 9110 allows), and a precompressed ``NAME.br`` or
``NAME.gz`` beside the file when the client accepts that coding (``Vary: Accept-Encoding``).

What it refuses, with 404 and nothing else said: a path that is not a regular file inside
DIR. Checked on the raw target before decoding (an encoded ``/`` or ``\\``, a NUL) and
after (``.`` and ``..`` segments, empty segments, a backslash, a Windows drive such as
``C:``), then once more on the real path, so a symlink that leaves DIR is refused too. A
directory is a 404: no listings, no index files.
"""

from __future__ import annotations

import email.utils
import mimetypes
import os
import re
import stat
from collections.abc import Iterable
from urllib.parse import unquote_to_bytes

from threadloom.config import static_mount
from threadloom.interfaces.wsgi import StreamSink
from threadloom.protocols.http1 import Request, response_head
from threadloom.protocols.http2 import response_headers

#: Raw (still percent-encoded) forms refused before decoding: an encoded slash, backslash
#: or NUL would hide a separator or end a C string after the checks below.
_REFUSED_RAW = re.compile(rb"%(2f|5c|00)|\\|\x00", re.IGNORECASE)
_DRIVE = re.compile(r"^[A-Za-z]:")
_CODINGS = (("br", ".br"), ("gzip", ".gz"))
_ALLOWED = [("Allow", "GET, HEAD")]


class FileAnswer:
    """A response to send: ``head``, then ``length`` bytes of ``fd`` from ``offset``
    (``fd`` is None when no body follows; else the receiver owns and closes it)."""

    __slots__ = ("fd", "fields", "head", "keep_alive", "length", "offset", "status")

    def __init__(
        self,
        status: int,
        head: bytes,
        keep_alive: bool,
        fd: int | None = None,
        offset: int = 0,
        length: int = 0,
        fields: list[tuple[str, str]] | None = None,
    ) -> None:
        self.status = status
        self.head = head
        #: the response's fields, for protocols that frame them otherwise (HTTP/2)
        self.fields = fields or []
        self.keep_alive = keep_alive
        self.fd = fd
        self.offset = offset
        self.length = length


class StaticFiles:
    """The ``--static`` mounts of a server (see the module docstring)."""

    def __init__(self, mounts: Iterable[str]) -> None:
        self.mounts: list[tuple[bytes, str]] = []
        for text in mounts:
            self.mounts.append(static_mount(text))
        # the longest prefix first, so /static/img=... wins over /static=...
        self.mounts.sort(key=lambda mount: -len(mount[0]))

    def claims(self, request: Request) -> bool:
        """Whether ``request`` is for a mount (then :meth:`answer` answers it, 404 or not)."""
        path = request.path
        return any(
            path.startswith(prefix) and path[len(prefix) : len(prefix) + 1] in (b"/", b"")
            for prefix, _ in self.mounts
        )

    def answer(self, request: Request) -> FileAnswer:
        """The response to a request :meth:`claims`: a file, a 304, 206, 404, 405 or 416."""
        if request.method not in ("GET", "HEAD"):
            return _bodiless(request, 405, _ALLOWED)
        path = self._resolve(request.path)
        if path is None:
            return _bodiless(request, 404, [])
        headers = dict(request.headers)
        ranged = b"range" in headers
        opened = None if ranged else _precompressed(path, headers.get(b"accept-encoding", b""))
        coding = None
        if opened is not None:
            fd, info, coding = opened
        else:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return _bodiless(request, 404, [])
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                os.close(fd)
                return _bodiless(request, 404, [])
        try:
            return _file_answer(request, headers, path, fd, info, coding)
        except BaseException:
            os.close(fd)
            raise

    def _resolve(self, raw_path: bytes) -> str | None:
        """The real path of the file a request names, or None (then 404)."""
        for prefix, root in self.mounts:
            if raw_path.startswith(prefix):
                rest = raw_path[len(prefix) :]
                if rest[:1] in (b"/", b""):
                    return _inside(root, rest)
        return None


def _inside(root: str, rest: bytes) -> str | None:
    if _REFUSED_RAW.search(rest):
        return None
    try:
        text = unquote_to_bytes(rest).decode("utf-8")
    except UnicodeDecodeError:
        return None
    segments = text.split("/")[1:]
    if not segments or any(
        seg in ("", ".", "..") or "\\" in seg or "\x00" in seg or _DRIVE.match(seg)
        for seg in segments
    ):
        return None
    real = os.path.realpath(os.path.join(root, *segments))
    return real if real.startswith(root + os.sep) else None  # (a symlink may leave root)


def _precompressed(path: str, accept: bytes) -> tuple[int, os.stat_result, str] | None:
    """An open ``NAME.br`` / ``NAME.gz`` beside ``path`` that the client accepts, if any."""
    accepted = _accepted_codings(accept)
    for coding, suffix in _CODINGS:
        if coding not in accepted:
            continue
        try:
            fd = os.open(path + suffix, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode):
            return fd, info, coding
        os.close(fd)
    return None


def _accepted_codings(accept: bytes) -> set[str]:
    codings = set()
    for item in accept.decode("latin-1").lower().split(","):
        name, _, params = item.strip().partition(";")
        q = params.strip()
        if q.startswith("q="):
            try:
                if float(q[2:]) <= 0:
                    continue
            except ValueError:
                continue
        codings.add(name.strip())
    return codings


def _file_answer(
    request: Request,
    headers: dict[bytes, bytes],
    path: str,
    fd: int,
    info: os.stat_result,
    coding: str | None,
) -> FileAnswer:
    size = info.st_size
    etag = f'"{size:x}-{info.st_mtime_ns:x}{"-" + coding if coding else ""}"'
    modified = email.utils.formatdate(info.st_mtime, usegmt=True)
    fields = [("ETag", etag), ("Last-Modified", modified)]
    if coding is not None or _has_sibling(path):
        fields.append(("Vary", "Accept-Encoding"))
    if _not_modified(headers, etag, info.st_mtime):
        os.close(fd)
        return _bodiless(request, 304, fields)
    kind, _ = mimetypes.guess_type(path)
    fields.append(("Content-Type", kind or "application/octet-stream"))
    if coding is not None:
        fields.append(("Content-Encoding", coding))
    fields.append(("Accept-Ranges", "bytes"))
    status, offset, length = 200, 0, size
    wanted = _byte_range(headers, etag, modified, size)
    if wanted == "unsatisfiable":
        os.close(fd)
        return _bodiless(request, 416, [("Content-Range", f"bytes */{size}")], body_length=0)
    if isinstance(wanted, tuple):
        status, (offset, length) = 206, wanted
        fields.append(("Content-Range", f"bytes {offset}-{offset + length - 1}/{size}"))
    fields.append(("Content-Length", str(length)))
    head, framer = response_head(request, status, fields)
    if request.method == "HEAD" or not length:
        os.close(fd)
        return FileAnswer(status, head, framer.keep_alive, fields=fields)
    return FileAnswer(status, head, framer.keep_alive, fd, offset, length, fields)


def _has_sibling(path: str) -> bool:
    return any(os.path.isfile(path + suffix) for _, suffix in _CODINGS)


def _not_modified(headers: dict[bytes, bytes], etag: str, mtime: float) -> bool:
    """RFC 9110 13.1.2 and 13.1.3: If-None-Match rules when present, else If-Modified-Since."""
    none_match = headers.get(b"if-none-match")
    if none_match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in none_match.decode("latin-1").split(",")}
        return "*" in tags or etag in tags
    since = headers.get(b"if-modified-since")
    if since is None:
        return False
    try:
        when = email.utils.parsedate_to_datetime(since.decode("latin-1")).timestamp()
    except (TypeError, ValueError, IndexError):
        return False
    return int(mtime) <= when


def _byte_range(
    headers: dict[bytes, bytes], etag: str, modified: str, size: int
) -> tuple[int, int] | str | None:
    """(offset, length) of the one range asked for; "unsatisfiable"; or None: the whole
    file (no Range, an If-Range that no longer holds, several ranges, or a malformed one)."""
    spec = headers.get(b"range")
    if spec is None or not spec.startswith(b"bytes="):
        return None
    if_range = headers.get(b"if-range")
    if if_range is not None and if_range.decode("latin-1") not in (etag, modified):
        return None
    first, sep, last = spec[6:].strip().partition(b"-")
    if b"," in spec or not sep:
        return None
    try:
        if not first:  # the last N bytes
            suffix = int(last)
            if suffix <= 0:
                return "unsatisfiable"
            return max(size - suffix, 0), min(suffix, size)
        start = int(first)
        end = int(last) if last else max(size - 1, start)
    except ValueError:
        return None
    if start > end:
        return None  # malformed (RFC 9110 14.1.1): ignored
    if start >= size:
        return "unsatisfiable"
    return start, min(end, size - 1) - start + 1


def _bodiless(
    request: Request,
    status: int,
    fields: list[tuple[str, str]],
    body_length: int | None = None,
) -> FileAnswer:
    """A response with no file after its head: 304, 404, 405, 416."""
    if status != 304:
        fields = [*fields, ("Content-Length", str(body_length or 0))]
    head, framer = response_head(request, status, fields)
    return FileAnswer(status, head, framer.keep_alive, fields=fields)


#: What is read from a file per DATA write over HTTP/2 (no sendfile: frames are cut).
STREAM_PIECE = 64 * 1024


def send_over_stream(answer: FileAnswer, sink: StreamSink) -> int:
    """An answer over an HTTP/2 stream: its fields as a header list, then the file read a
    piece at a time (the sink waits for the client's window between pieces); the bytes
    sent. The descriptor is closed whatever happens."""
    headers = response_headers(answer.status, answer.fields)
    fd = answer.fd
    if fd is None:
        sink.respond(headers, b"", True)
        return 0
    sent, offset, remaining = 0, answer.offset, answer.length
    try:
        while remaining:
            piece = os.pread(fd, min(STREAM_PIECE, remaining), offset)
            if not piece:  # the file shrank under us: the promised length cannot be kept
                sink.reset()
                break
            offset += len(piece)
            remaining -= len(piece)
            if sent:
                sink.send(piece, not remaining)
            else:
                sink.respond(headers, piece, not remaining)
            sent += len(piece)
    finally:
        os.close(fd)
    return sent
