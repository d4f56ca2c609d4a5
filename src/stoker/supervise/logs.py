"""Program log files: append, rotate by size at line boundaries, read back the tail.

The daemon reads each child's stdout/stderr pipe on its event loop and hands every chunk to a
`LogFile`. Writing is a plain synchronous `os.write`: appending to a regular file lands in the
page cache and costs microseconds, far less than handing it to a thread would.

Layout on disk for a log `mailer.0.log` kept with ``keep=3``::

    mailer.0.log.3   oldest
    mailer.0.log.2
    mailer.0.log.1
    mailer.0.log     current, appended to

stoker rotates its own logs. Do not point logrotate (or anything else that renames or
truncates files) at them: a `LogFile` keeps its descriptor and tracks the size in memory, so
an outside rename goes unnoticed until the next rotation, which then simply starts a fresh
file (it treats a vanished current file as already rotated away).

Rotation is deterministic and independent of how the output was chunked: lines are packed
greedily, and a line that no longer fits moves whole to a fresh file. Only a line longer than
`max_size` is split, at `max_size`. So every rotated file ends with a newline except the
pieces of such an over-long line, and every file is at most `max_size` bytes.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

__all__ = [
    "STREAM_FDS",
    "TAIL_BYTES",
    "LogFile",
    "StreamLog",
    "cut_marker",
    "log_paths",
    "rotated_path",
    "tail",
]

log = logging.getLogger(__name__)

#: Block size for reading files backwards (`tail`) and for moving a partial line on rotation.
_BLOCK = 64 * 1024

#: The most `tail` returns, whatever the lines asked for: a log with no newline (or very long
#: lines) would otherwise be read whole into the daemon's memory for one request.
TAIL_BYTES = 1024 * 1024

Listener = Callable[[bytes], None]


def cut_marker(budget: int) -> bytes:
    """The line `tail` puts before an answer it cut at its byte budget."""
    size = f"{budget // 1024} KB" if budget % (1024 * 1024) else f"{budget // (1024 * 1024)} MB"
    return f"[stoker] cut: only the last {size} are shown\n".encode()


def rotated_path(path: Path, n: int) -> Path:
    """`path` for n == 0, else the n-th rotated file `path.n` (1 is the most recent)."""
    return path if n == 0 else path.with_name(f"{path.name}.{n}")


def log_paths(path: Path, keep: int) -> list[Path]:
    """The files of this log that exist, oldest first: path.keep … path.1, path."""
    candidates = [rotated_path(path, n) for n in range(max(keep, 0), -1, -1)]
    return [p for p in candidates if p.is_file()]


def _newest_first(path: Path) -> Iterator[Path]:
    """path, path.1, path.2, … until a rotated file is missing.

    A missing current file does not end the walk: it exists again right after a rotation, and
    one of our own rotations may be between its rename and the reopen.
    """
    yield path
    n = 1
    while True:
        p = rotated_path(path, n)
        if not p.exists():
            return
        yield p
        n += 1


def tail(path: Path, lines: int, budget: int = TAIL_BYTES) -> bytes:
    """The last `lines` lines of the log at `path`, across its rotated files, oldest first.

    Like ``tail -n``: a last line without a newline counts as a line. Files are read backwards
    in blocks and only as far as needed, so this is cheap on a 50 MB log. Whatever the line
    lengths, at most `budget` bytes of the log are read and returned: when the lines asked for
    are longer, the answer is the last `budget` bytes after a `cut_marker` line. A log that
    does not exist gives ``b""``. Not atomic against a rotation done by another thread at the
    same time (the daemon writes and reads on one event loop, so it never is).
    """
    if lines <= 0:
        return b""
    pieces: list[bytes] = []  # newest first
    held = 0  # bytes in pieces
    need = lines  # newlines still to find before the start of the answer
    at_stream_end = True  # nothing seen yet: the next byte read is the last byte of the log
    for p in _newest_first(path):
        try:
            fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        except OSError as e:
            if e.errno == errno.ELOOP:  # a link in its place: not ours to read, as if absent
                continue
            raise
        try:
            pos = os.fstat(fd).st_size
            while pos > 0:
                # One byte past the budget: a newline there means the lines asked for fit.
                start = max(0, pos - _BLOCK, pos - (budget + 1 - held))
                block = os.pread(fd, pos - start, start)
                pos = start
                if not block:
                    continue
                search_end = len(block)
                if at_stream_end:
                    at_stream_end = False
                    if block.endswith(b"\n"):
                        # The newline that ends the last line does not start another one.
                        search_end -= 1
                while True:
                    idx = block.rfind(b"\n", 0, search_end)
                    if idx < 0:
                        break
                    need -= 1
                    if need == 0:
                        pieces.append(block[idx + 1 :])
                        return b"".join(reversed(pieces))
                    search_end = idx
                pieces.append(block)
                held += len(block)
                if held > budget:  # more lines wanted than fit: the last `budget` bytes
                    return cut_marker(budget) + b"".join(reversed(pieces))[-budget:]
        finally:
            os.close(fd)
    return b"".join(reversed(pieces))


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a link where the log goes
        return "a symbolic link is in its place, and is not followed"
    return exc.strerror or str(exc) or type(exc).__name__


class LogFile:
    """Append-only log of one program instance stream, rotated by size at line boundaries.

    Never raises on I/O trouble: a program must not die or stall because its log cannot be
    written. Output that cannot be written (disk full, file system gone read-only, …) is
    counted in `dropped_bytes` and every later `write` tries again; once writing works again a
    line ``[stoker] N bytes of output were lost (reason)`` marks the gap. `error` tells whether
    the log is currently failing, for `status` and the API to show.

    Memory use is bounded: nothing is buffered between writes, and moving a partial line to a
    fresh file on rotation copies it file-to-file in blocks.
    """

    readable = True  # its path can be tailed (a StreamLog's cannot)

    def __init__(
        self,
        path: Path,
        *,
        max_size: int,
        keep: int,
        timestamps: bool = False,
        markers: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1 byte, got {max_size}")
        if keep < 0:
            raise ValueError(f"keep must be 0 or more, got {keep}")
        self.path = Path(path)
        self.max_size = max_size
        self.keep = keep
        self.timestamps = timestamps
        self.markers = markers  # `mark` writes its lines (stoker's own logs; not a file you chose)
        self.dropped_bytes = 0
        self._clock = clock
        self._listeners: list[Listener] = []
        self._closed = False
        self._fd: int | None = None
        # Size of the current file, tracked here so that a write costs no stat() call.
        self._size = 0
        # Offset in the current file where its last, unfinished line starts; == _size when
        # the file ends with a newline (or we chose to treat it as complete, see _open).
        self._line_start = 0
        # Whether the next byte of the stream starts a line (for timestamps and markers).
        self._at_line_start = True
        # The failure of the current outage (None when healthy) and the bytes it has cost.
        self._error: OSError | None = None
        self._lost = 0
        self._rotate_warned = False
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._open()
            if markers and self._fd is not None and self._size:
                # An earlier daemon's last run may have ended mid-line: a marker ends it.
                self._at_line_start = os.pread(self._fd, 1, self._size - 1) == b"\n"
        except OSError as exc:
            # Not fatal: the first write retries, and the program runs meanwhile.
            self._fail(exc)

    # -- public ------------------------------------------------------------------------

    @property
    def error(self) -> OSError | None:
        """The failure that is currently losing output, or None when the log is healthy."""
        return self._error

    @property
    def size(self) -> int:
        """Bytes in the current (unrotated) file, as far as this writer knows."""
        return self._size

    @property
    def closed(self) -> bool:
        return self._closed

    def write(self, data: bytes) -> None:
        """Append one chunk of program output; never raises OSError."""
        if self._closed:
            raise ValueError(f"write to closed log {self.path}")
        if not data:
            return
        ok = self._error is None or self._recover()
        if self.timestamps:
            data = self._stamp(data)
        else:
            self._at_line_start = data.endswith(b"\n")
        self._put(data, ok)

    def mark(self, what: str) -> None:
        """Write a line of stoker's own between the program's: ``--- started pid 1234 at
        2026-12-05T20:44:15.123+00:00 ---`` (with timestamps, the line's prefix tells the time
        instead), so that the runs of a program can be told apart. Always on a line of its own
        (a run that ended mid-line is ended first); listeners (``stoker logs -f``) see it too.
        Nothing without `markers` (a file or stream you chose gets the program's bytes only)."""
        if self._closed or not self.markers:
            return
        ok = self._error is None or self._recover()
        if self.timestamps:
            line = self._prefix() + f"--- {what} ---\n".encode()
        else:
            line = f"--- {what} at {self._moment()} ---\n".encode()
        if not self._at_line_start:
            line = b"\n" + line
        self._at_line_start = True
        self._put(line, ok)

    def _put(self, data: bytes, ok: bool) -> None:
        unwritten = self._emit(data) if ok else len(data)
        if unwritten:
            self.dropped_bytes += unwritten
            self._lost += unwritten
        self._notify(data)

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(chunk)` with every chunk from now on (after timestamp prefixing).

        Listeners see the program's output even while the disk refuses it; they do not see
        the gap marker, which describes the file. A listener that raises is removed.
        """
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling `listener`; removing one that is not registered is not an error."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def clear(self) -> None:
        """Empty the log: the current file truncated, its rotated files removed (supervisord's
        clearProcessLogs). OSError if the file cannot be truncated."""
        for n in range(1, self.keep + 1):
            rotated_path(self.path, n).unlink(missing_ok=True)
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
        elif self.path.exists():
            os.truncate(self.path, 0)
        self._size = self._line_start = 0

    def close(self) -> None:
        """Close the file. Idempotent; writing afterwards raises ValueError."""
        if self._closed:
            return
        if self._error is not None and self._lost:
            # Last chance to record a gap that no later write would mark.
            self._recover()
        self._closed = True
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> LogFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"size={self._size}"
        return f"<LogFile {str(self.path)!r} {state} dropped={self.dropped_bytes}>"

    # -- internals ---------------------------------------------------------------------

    def _open(self) -> None:
        # O_RDWR (not O_WRONLY) so that a rotation can read back the unfinished last line it
        # moves to the fresh file. O_APPEND keeps writes at the end even if someone else
        # appends too. 0600: program output is the daemon's to show (the umask only removes bits).
        # O_NOFOLLOW: a link planted in place of the log is not followed to the file it names.
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(fd).st_size
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        self._size = size
        # Whatever an earlier run left is treated as complete lines: we never move bytes we
        # did not write, and a new process's output starts a line for timestamping anyway.
        self._line_start = size

    def _fail(self, exc: OSError) -> None:
        if self._error is None:
            self._error = exc
            log.warning("log %s: cannot write (%s); dropping output", self.path, _reason(exc))

    def _recover(self) -> bool:
        """Try to end an outage: reopen if needed, then write the gap marker."""
        assert self._error is not None
        if self._fd is None:
            try:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._open()
            except OSError:
                return False
        if self._lost:
            marker = f"[stoker] {self._lost} bytes of output were lost ({_reason(self._error)})\n"
            data = marker.encode()
            if self.timestamps:
                data = self._prefix() + data
            if self._line_start < self._size:
                data = b"\n" + data  # the gap ended mid-line: the marker gets its own line
            if self._emit(data):
                return False  # still failing; the marker is retried with the new total
            # The marker ended a line in the file, so what follows gets a prefix of its own
            # even if the lost output stopped mid-line.
            self._at_line_start = True
        log.warning("log %s: writing again (%d bytes lost)", self.path, self._lost)
        self._error = None
        self._lost = 0
        return True

    def _moment(self) -> str:
        """Now, as ISO 8601 in the daemon's zone with milliseconds: 2026-12-05T20:44:15.123+08:00."""
        return datetime.fromtimestamp(self._clock(), tz=UTC).astimezone().isoformat(timespec="milliseconds")

    def _prefix(self) -> bytes:
        return self._moment().encode() + b" "

    def _stamp(self, data: bytes) -> bytes:
        """Prefix every line start in `data`; one clock reading per chunk (it arrived at once)."""
        prefix = self._prefix()
        body = data.replace(b"\n", b"\n" + prefix)
        if data.endswith(b"\n"):
            # The line after the final newline has not started yet: its prefix comes with
            # the chunk that starts it (maybe much later, with a later time).
            body = body[: -len(prefix)]
        if self._at_line_start:
            body = prefix + body
        self._at_line_start = data.endswith(b"\n")
        return body

    def _notify(self, data: bytes) -> None:
        for listener in list(self._listeners):
            try:
                listener(data)
            except Exception:
                log.exception("log %s: listener %r failed; removed", self.path, listener)
                self.remove_listener(listener)

    def _emit(self, data: bytes) -> int:
        """Write `data` to the file, rotating as needed. Returns how many bytes were not written."""
        view = memoryview(data)
        total = len(data)
        pos = 0

        def put(end: int) -> None:
            # Writes data[pos:end], coping with short writes; advances pos as bytes land so
            # that a failure part-way knows exactly what is on disk.
            nonlocal pos
            fd = self._fd
            assert fd is not None
            while pos < end:
                n = os.write(fd, view[pos:end])
                if n <= 0:  # not expected for regular files; never spin on it
                    raise OSError(errno.EIO, "write wrote nothing")
                nl = data.rfind(b"\n", pos, pos + n)
                self._size += n
                if nl >= 0:
                    self._line_start = self._size - (pos + n - nl - 1)
                pos += n

        try:
            if self._fd is None:
                raise OSError(errno.EBADF, "log file is not open")
            while pos < total:
                room = max(self.max_size - self._size, 0)
                if total - pos <= room:
                    put(total)
                    break
                nl = data.rfind(b"\n", pos, pos + room)
                if nl >= 0:
                    # Whole lines that fit go here; the rest starts the next file.
                    put(nl + 1)
                    rotated = self._rotate(carry=False)
                elif self._line_start > 0:
                    # The current line does not fit but earlier lines are in this file: the
                    # line moves whole (its already written start included) to a fresh file.
                    rotated = self._rotate(carry=True)
                else:
                    # The line began at the top of this file and is longer than max_size:
                    # the only case where a line is split.
                    put(pos + room)
                    rotated = self._rotate(carry=False)
                if not rotated:
                    # Could not rotate: keep everything rather than lose it, even if the
                    # file grows past max_size. The next write tries to rotate again.
                    put(total)
                    break
        except OSError as exc:
            self._fail(exc)
            return total - pos
        return 0

    def _shift(self) -> bool:
        """Rename path.(keep-1)→path.keep … path→path.1 (or delete path when keep == 0).

        Returns False if the current file could not be moved out of the way. A failure to
        shift an older file only costs that older file and is otherwise ignored.
        """
        for n in range(self.keep - 1, 0, -1):
            with contextlib.suppress(OSError):  # missing (fewer rotations so far) or stuck
                os.replace(rotated_path(self.path, n), rotated_path(self.path, n + 1))
        try:
            if self.keep:
                os.replace(self.path, rotated_path(self.path, 1))
            else:
                os.unlink(self.path)
        except FileNotFoundError:
            pass  # renamed or deleted by someone else: as good as rotated
        except OSError as exc:
            if not self._rotate_warned:
                self._rotate_warned = True
                log.warning(
                    "log %s: cannot rotate (%s); the file grows past max_size",
                    self.path,
                    _reason(exc),
                )
            return False
        self._rotate_warned = False
        # Files beyond `keep` are left over from a larger `keep` in an earlier config.
        n = self.keep + 1
        while True:
            try:
                os.unlink(rotated_path(self.path, n))
            except OSError:
                break
            n += 1
        return True

    def _rotate(self, *, carry: bool) -> bool:
        """Start a fresh current file. With `carry`, move the unfinished last line into it.

        Returns False when nothing was rotated (the current file stays). Raises OSError when
        the fresh file cannot be opened or filled; bytes not yet moved then stay in the old
        file, so nothing is doubled.
        """
        old_fd = self._fd
        assert old_fd is not None
        old_size = self._size
        move_from = self._line_start if carry else old_size
        if not self._shift():
            return False
        # The old file is renamed (or unlinked) but old_fd still reads it.
        self._fd = None
        try:
            self._open()
            new_fd = self._fd
            assert new_fd is not None
            if move_from < old_size:
                try:
                    self._copy(old_fd, move_from, old_size, new_fd)
                except OSError:
                    with contextlib.suppress(OSError):
                        os.ftruncate(new_fd, 0)
                    self._size = self._line_start = 0
                    raise
                with contextlib.suppress(OSError):
                    os.ftruncate(old_fd, move_from)
                # The moved bytes are one unfinished line starting at the top of the file.
                self._size = old_size - move_from
                self._line_start = 0
        finally:
            with contextlib.suppress(OSError):
                os.close(old_fd)
        return True

    @staticmethod
    def _copy(src: int, start: int, end: int, dst: int) -> None:
        pos = start
        while pos < end:
            block = os.pread(src, min(_BLOCK, end - pos), pos)
            if not block:
                raise OSError(errno.EIO, "log file shrank while rotating")
            view = memoryview(block)
            while view:
                n = os.write(dst, view)
                if n <= 0:
                    raise OSError(errno.EIO, "write wrote nothing")
                view = view[n:]
            pos += len(block)


#: log.file values that are streams, not files: the daemon's own stdout and stderr (whatever
#: they are: a terminal, the journal, a container runtime's pipe), and nowhere (None).
STREAM_FDS: dict[str, int | None] = {"/dev/stdout": 1, "/dev/stderr": 2, "/dev/null": None}


class StreamLog(LogFile):
    """A program's output written to the daemon's own stdout or stderr (``log.file =
    "/dev/stdout"``: the container idiom), or dropped (``"/dev/null"``: supervisord's NONE).

    Never rotated and nothing to tail (``readable`` is False): what reads the stream keeps it.
    Timestamps, markers, listeners (``stoker logs -f``) and the lost-output accounting work as
    for a file. The daemon's descriptor is duplicated, so closing this never closes the daemon's.
    """

    readable = False

    def __init__(
        self,
        target: str,
        *,
        timestamps: bool = False,
        markers: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if target not in STREAM_FDS:
            raise ValueError(f"not a stream: {target!r}; expected one of {', '.join(STREAM_FDS)}")
        self.target = target
        super().__init__(
            Path(target), max_size=1, keep=0, timestamps=timestamps, markers=markers, clock=clock
        )

    def _open(self) -> None:
        fd = STREAM_FDS[self.target]
        self._fd = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC) if fd is None else os.dup(fd)
        self._size = self._line_start = 0

    def _emit(self, data: bytes) -> int:
        view = memoryview(data)
        try:
            if self._fd is None:
                raise OSError(errno.EBADF, "stream is not open")
            while view:
                n = os.write(self._fd, view)
                if n <= 0:
                    raise OSError(errno.EIO, "write wrote nothing")
                view = view[n:]
        except OSError as exc:
            self._fail(exc)
            return len(view)
        return 0
