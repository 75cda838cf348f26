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
``C:``), then once more on the real path of the file opened (a precompressed sibling's
too), so a symlink that leaves DIR is refused. A directory is a 404: no listings, no
index files.

Per request: one ``open`` and one ``fstat``, and on Linux one ``readlink`` of the opened
descriptor for its real path; what the head says that depends only on the file's path,
size and mtime (ETag, Last-Modified, the content type, whether siblings exist) comes from
a bounded memo checked against that ``fstat``.
"""

from __future__ import annotations

import email.utils
import mimetypes
import os
import re
import stat
import time
from collections.abc import Iterable
from urllib.parse import unquote_to_bytes

from threadloom import portable
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
#: How a file is opened: a FIFO must not block the thread that opens it.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
#: Whether an open descriptor's real path can be read back (Linux).
_PROC_FD = os.path.isdir("/proc/self/fd")
#: Files whose head fields the memo keeps (it is cleared whole when full), and how long a
#: look for precompressed siblings stands (they only decide ``Vary``).
MEMO_MAX = 1024
SIBLINGS_TTL_S = 1.0
#: Files up to this size are read and sent with their head in one write: cheaper than
#: handing the kernel a descriptor (``sendfile``) for a few kilobytes.
SMALL_FILE = 16 * 1024


class FileAnswer:
    """A response to send: ``head``, then ``length`` bytes of ``fd`` from ``offset``
    (``fd`` is None when no file follows; else the receiver owns and closes it). A small
    file is read at once instead (``SMALL_FILE``): ``head`` is then the whole response and
    ``body`` its body alone, for protocols that frame it otherwise (HTTP/2)."""

    __slots__ = ("body", "fd", "fields", "head", "keep_alive", "length", "offset", "status")

    def __init__(
        self,
        status: int,
        head: bytes,
        keep_alive: bool,
        fd: int | None = None,
        offset: int = 0,
        length: int = 0,
        fields: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        self.status = status
        self.body = body
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
        self.memo: dict[str, FileMeta] = {}  # real path -> its head fields (see _meta)

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
        found = self._resolve(request.path)
        if found is None:
            return _bodiless(request, 404, [])
        root, path = found
        headers = dict(request.headers)
        ranged = b"range" in headers
        accept = headers.get(b"accept-encoding", b"")
        opened = None if ranged or not accept else _precompressed(root, path, accept)
        coding = None
        if opened is not None:
            fd, info, real, coding = opened
        else:
            plain = _open_inside(root, path)
            if plain is None:
                return _bodiless(request, 404, [])
            fd, info, real = plain
        try:
            meta = self._meta(real, info)
            return _file_answer(request, headers, meta, fd, info, coding)
        except BaseException:
            os.close(fd)
            raise

    def _meta(self, real: str, info: os.stat_result) -> FileMeta:
        """What a file's head says that only its path, size and mtime decide, from a bounded
        memo (cheap to check: the file was just opened and fstat'ed); whether it has
        precompressed siblings is looked at again after ``SIBLINGS_TTL_S``.

        Thread models call this from several workers at once, without a lock by design:
        each dict operation is atomic, a FileMeta is whole before it is stored, and two
        threads that refresh the same entry at once only repeat the same look."""
        meta = self.memo.get(real)
        now = time.monotonic()
        if meta is None or meta.stamp != (info.st_mtime_ns, info.st_size, info.st_ino):
            if len(self.memo) >= MEMO_MAX:
                self.memo.clear()
            meta = self.memo[real] = FileMeta(real, info, now)
        elif now - meta.probed_at > SIBLINGS_TTL_S:
            meta.siblings, meta.probed_at = _has_sibling(real), now
        return meta

    def _resolve(self, raw_path: bytes) -> tuple[str, str] | None:
        """The mount's root and the path in it a request names (not yet resolved: what is
        opened there is checked by :func:`_open_inside`), or None (then 404)."""
        for prefix, root in self.mounts:
            if raw_path.startswith(prefix):
                rest = raw_path[len(prefix) :]
                if rest[:1] in (b"/", b""):
                    path = _inside(root, rest)
                    return None if path is None else (root, path)
        return None


class FileMeta:
    """A file's validators, type and siblings, for the memo of :meth:`StaticFiles._meta`."""

    __slots__ = ("etag", "kind", "modified", "mtime", "probed_at", "siblings", "stamp")

    def __init__(self, real: str, info: os.stat_result, now: float) -> None:
        self.stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        self.etag = f"{info.st_size:x}-{info.st_mtime_ns:x}"  # quoted, and a coding added
        self.mtime = info.st_mtime
        self.modified = email.utils.formatdate(info.st_mtime, usegmt=True)
        self.kind = mimetypes.guess_type(real)[0] or "application/octet-stream"
        self.siblings = _has_sibling(real)
        self.probed_at = now


def _inside(root: str, rest: bytes) -> str | None:
    """The path under ``root`` that ``rest`` names, or None where a segment is refused."""
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
    return os.path.join(root, *segments)


def _open_inside(root: str, path: str) -> tuple[int, os.stat_result, str] | None:
    """The regular file at ``path`` opened, its status and real path, if that real path is
    inside ``root`` (a symlink may point elsewhere); else None. The real path is the opened
    file's own where the system tells it (``/proc/self/fd``): one system call instead of a
    ``realpath`` walk of every component, and no window in which a symlink swapped after
    the check could change what is sent. A FIFO is opened without blocking, then refused."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode):
            real = _real_path(fd, path)
            if real.startswith(root + os.sep):
                return fd, info, real
    except OSError:
        pass
    os.close(fd)
    return None


def _real_path(fd: int, path: str) -> str:
    """Where an open file really is (see :func:`_open_inside`)."""
    if _PROC_FD:
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    return os.path.realpath(path)


def _precompressed(
    root: str, path: str, accept: bytes
) -> tuple[int, os.stat_result, str, str] | None:
    """An open ``NAME.br`` / ``NAME.gz`` beside ``path``, inside ``root`` as the file itself
    must be, that the client accepts, if any."""
    accepted = _accepted_codings(accept)
    for coding, suffix in _CODINGS:
        if coding in accepted and (opened := _open_inside(root, path + suffix)) is not None:
            return (*opened, coding)
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
    meta: FileMeta,
    fd: int,
    info: os.stat_result,
    coding: str | None,
) -> FileAnswer:
    size = info.st_size
    etag = f'"{meta.etag}-{coding}"' if coding else f'"{meta.etag}"'
    modified = meta.modified
    fields = [("ETag", etag), ("Last-Modified", modified)]
    if coding is not None or meta.siblings:
        fields.append(("Vary", "Accept-Encoding"))
    if _not_modified(headers, etag, meta.mtime):
        os.close(fd)
        return _bodiless(request, 304, fields)
    fields.append(("Content-Type", meta.kind))
    if coding is not None:
        fields.append(("Content-Encoding", coding))
    fields.append(("Accept-Ranges", "bytes"))
    status, offset, length = 200, 0, size
    wanted = _byte_range(headers, etag, modified, size) if b"range" in headers else None
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
    if length <= SMALL_FILE:
        body = portable.pread(fd, length, offset)
        if len(body) == length:  # (else the file shrank: sent from fd, which notices)
            os.close(fd)
            return FileAnswer(
                status, head + body, framer.keep_alive, None, offset, length, fields, body
            )
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
        sink.respond(headers, answer.body, True)
        return len(answer.body)
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
