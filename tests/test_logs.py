"""Tests for stoker.supervise.logs: rotation, timestamps, tail, listeners, disk trouble."""

from __future__ import annotations

import errno
import itertools
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stoker.supervise import logs
from stoker.supervise.logs import LogFile, cut_marker, log_paths, rotated_path, tail

# -- helpers -----------------------------------------------------------------------------


def patch_os(monkeypatch: pytest.MonkeyPatch, name: str, fake: Callable[..., Any]) -> None:
    """Replace os.<name> for calls made by the logs module only.

    `logs.os` is the process-wide os module: pytest itself must keep the real functions.
    """
    real = getattr(os, name)

    def dispatch(*args: Any, **kwargs: Any) -> Any:
        if sys._getframe(1).f_globals.get("__name__") == logs.__name__:
            return fake(*args, **kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(logs.os, name, dispatch)


def layout(stream: bytes, max_size: int) -> list[bytes]:
    """Reference model: the files (oldest first) a stream must end up in, whatever its chunking.

    Lines are packed greedily; a line that does not fit in a non-empty file starts a new one;
    a line longer than max_size is cut into max_size pieces.
    """
    files = [b""]
    for line in split_lines(stream):
        if len(files[-1]) + len(line) <= max_size:
            files[-1] += line
            continue
        if files[-1]:
            files.append(b"")
        while len(line) > max_size:
            files[-1] = line[:max_size]
            files.append(b"")
            line = line[max_size:]
        files[-1] += line
    return files


def split_lines(data: bytes) -> list[bytes]:
    """Lines with their "\\n" (only "\\n" ends a line in a log); a last one may lack it."""
    return re.findall(rb"[^\n]*\n|[^\n]+\Z", data)


def on_disk(path: Path, keep: int) -> list[bytes]:
    return [p.read_bytes() for p in log_paths(path, keep)]


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


class FakeClock:
    def __init__(self, start: float = 1_795_426_862.123) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@contextmanager
def timezone(name: str) -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


lines_st = st.lists(
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"x") + b"\n"),
    max_size=40,
)


# -- basics ------------------------------------------------------------------------------


def test_creates_parent_dirs_and_appends(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "prog.log"
    with LogFile(path, max_size=1000, keep=2) as lf:
        lf.write(b"one\n")
        lf.write(b"")
        lf.write(b"two\n")
        assert lf.size == 8
    assert path.read_bytes() == b"one\ntwo\n"
    # Reopening appends, and the existing size counts toward max_size.
    with LogFile(path, max_size=12, keep=2) as lf:
        assert lf.size == 8
        lf.write(b"three\n")
    assert path.read_bytes() == b"three\n"
    assert rotated_path(path, 1).read_bytes() == b"one\ntwo\n"


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_size"):
        LogFile(tmp_path / "x.log", max_size=0, keep=1)
    with pytest.raises(ValueError, match="keep"):
        LogFile(tmp_path / "x.log", max_size=10, keep=-1)


def test_write_after_close_raises_and_close_is_idempotent(tmp_path: Path) -> None:
    lf = LogFile(tmp_path / "x.log", max_size=10, keep=1)
    lf.close()
    lf.close()
    assert lf.closed
    with pytest.raises(ValueError, match="closed"):
        lf.write(b"late\n")


def test_no_stat_per_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lf = LogFile(tmp_path / "x.log", max_size=10_000, keep=1)
    calls: list[object] = []
    patch_os(monkeypatch, "fstat", lambda *a: calls.append(a))
    patch_os(monkeypatch, "stat", lambda *a, **k: calls.append(a))
    for i in range(100):
        lf.write(b"line %d\n" % i)
    assert calls == []
    lf.close()


# -- rotation ----------------------------------------------------------------------------


def test_rotates_at_last_newline_that_fits(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    with LogFile(path, max_size=10, keep=3) as lf:
        lf.write(b"aaa\nbbb\nccc\nddd\n")
    assert on_disk(path, 3) == [b"aaa\nbbb\n", b"ccc\nddd\n"]


def test_line_split_across_chunks_moves_whole_to_next_file(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    with LogFile(path, max_size=10, keep=3) as lf:
        lf.write(b"aaaa\nbb")  # "bb" is on disk at once…
        assert path.read_bytes() == b"aaaa\nbb"
        lf.write(b"bbbbb\n")  # …and moves to the fresh file when its line no longer fits
    assert on_disk(path, 3) == [b"aaaa\n", b"bbbbbbb\n"]


def test_long_line_is_split_at_max_size(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    with LogFile(path, max_size=4, keep=5) as lf:
        lf.write(b"ab\n")
        lf.write(b"0123456789\n")
        lf.write(b"z\n")
    assert on_disk(path, 5) == [b"ab\n", b"0123", b"4567", b"89\n", b"z\n"]


def test_long_partial_line_written_in_pieces(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    with LogFile(path, max_size=4, keep=5) as lf:
        for byte in b"abcdefghij":
            lf.write(bytes([byte]))
    assert on_disk(path, 5) == [b"abcd", b"efgh", b"ij"]


def test_keep_zero_keeps_only_the_current_file(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    with LogFile(path, max_size=8, keep=0) as lf:
        for i in range(10):
            lf.write(b"l%d\n" % i)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.log"]
    assert path.read_bytes() == b"l8\nl9\n"
    assert log_paths(path, 0) == [path]


def test_rotation_drops_oldest_beyond_keep(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    with LogFile(path, max_size=3, keep=2) as lf:
        for i in range(6):
            lf.write(b"%d\n" % i)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.log", "x.log.1", "x.log.2"]
    assert on_disk(path, 2) == [b"3\n", b"4\n", b"5\n"]


def test_leftovers_from_a_larger_keep_are_removed(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    for n in range(1, 6):
        rotated_path(path, n).write_bytes(b"old %d\n" % n)
    with LogFile(path, max_size=3, keep=2) as lf:
        lf.write(b"a\nb\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.log", "x.log.1", "x.log.2"]
    assert on_disk(path, 2) == [b"old 1\n", b"a\n", b"b\n"]


def test_existing_file_larger_than_max_size_rotates_on_first_write(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_bytes(b"x" * 50)  # from an earlier config with a bigger max_size
    with LogFile(path, max_size=10, keep=1) as lf:
        lf.write(b"new\n")
    assert on_disk(path, 1) == [b"x" * 50, b"new\n"]


def test_file_removed_by_someone_else_is_recreated_on_rotation(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    with LogFile(path, max_size=6, keep=2) as lf:
        lf.write(b"aa\n")
        path.unlink()  # not supported, but must not break logging
        lf.write(b"bb\n")  # still goes to the unlinked inode
        lf.write(b"cc\n")  # rotation: current file already gone → fresh file
    assert path.read_bytes() == b"cc\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(
        st.tuples(st.integers(0, 30), st.booleans()),
        max_size=40,
    ),
    tail_len=st.integers(0, 12),
    cuts=st.lists(st.integers(0, 10_000), max_size=30),
    max_size=st.integers(1, 40),
    keep=st.integers(0, 4),
)
def test_rotation_property(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[tuple[int, bool]],
    tail_len: int,
    cuts: list[int],
    max_size: int,
    keep: int,
) -> None:
    # Lines of random lengths (some far longer than max_size), maybe a final unfinished one.
    stream = b"".join((b"%x" % i * 40)[:length] + b"\n" for i, (length, _) in enumerate(lines)) + (
        b"t" * tail_len
    )
    path = tmp_path_factory.mktemp("rot") / "x.log"
    with LogFile(path, max_size=max_size, keep=keep) as lf:
        for chunk in chunked(stream, cuts):
            lf.write(chunk)
        assert lf.dropped_bytes == 0
    files = on_disk(path, keep)
    expected = layout(stream, max_size)
    # Chunking does not matter: exactly the model's last keep+1 files survive.
    assert files == expected[-(keep + 1) :]
    # Nothing lost or doubled: the survivors are the end of the input.
    assert stream.endswith(b"".join(files))
    if len(expected) <= keep + 1:
        assert b"".join(files) == stream
    long_lines = [ln for ln in split_lines(stream) if len(ln) > max_size]
    for i, content in enumerate(files):
        assert len(content) <= max_size
        if i < len(files) - 1:
            # A rotated file ends with a newline unless it is a piece of an over-long line.
            # Such a piece is a full file holding nothing but part of that one line.
            assert content.endswith(b"\n") or (
                len(content) == max_size and b"\n" not in content and long_lines
            )
    # tail() agrees with the lines of what survived.
    surviving = b"".join(files)
    for n in (1, 2, 5, 1000):
        got = tail(path, n)
        assert got == b"".join(split_lines(surviving)[-n:])


# -- tail / log_paths --------------------------------------------------------------------


def test_tail_missing_file(tmp_path: Path) -> None:
    assert tail(tmp_path / "nope.log", 10) == b""


def test_tail_basic_cases(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_bytes(b"a\nb\nc\n")
    assert tail(path, 0) == b""
    assert tail(path, -3) == b""
    assert tail(path, 1) == b"c\n"
    assert tail(path, 2) == b"b\nc\n"
    assert tail(path, 3) == b"a\nb\nc\n"
    assert tail(path, 100) == b"a\nb\nc\n"
    path.write_bytes(b"a\nb\nc")  # last line without newline counts as a line
    assert tail(path, 1) == b"c"
    assert tail(path, 2) == b"b\nc"
    path.write_bytes(b"")
    assert tail(path, 5) == b""
    path.write_bytes(b"\n\n\n")
    assert tail(path, 2) == b"\n\n"


def test_tail_across_rotated_files(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    all_lines = [b"line %02d\n" % i for i in range(30)]
    with LogFile(path, max_size=40, keep=10) as lf:
        for line in all_lines:
            lf.write(line)
    assert len(log_paths(path, 10)) > 3
    for n in range(0, 35):
        assert tail(path, n) == b"".join(all_lines[max(len(all_lines) - n, 0) :] if n else [])


def test_tail_when_current_file_is_empty_after_rotation(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    rotated_path(path, 2).write_bytes(b"a\nb\n")
    rotated_path(path, 1).write_bytes(b"c\nd")  # a split over-long line
    path.write_bytes(b"")
    assert tail(path, 1) == b"d"
    assert tail(path, 3) == b"b\nc\nd"
    path.unlink()  # between the rename and the reopen of a rotation
    assert tail(path, 2) == b"c\nd"
    # A gap in the numbering ends the walk.
    rotated_path(path, 4).write_bytes(b"never\n")
    assert tail(path, 100) == b"a\nb\nc\nd"


def test_tail_reads_backwards_only_as_far_as_needed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.log"
    path.write_bytes(b"".join(b"%07d\n" % i for i in range(200_000)))  # 1.6 MB
    read: list[int] = []
    real_pread = os.pread

    def counting_pread(fd: int, n: int, offset: int) -> bytes:
        read.append(n)
        return real_pread(fd, n, offset)

    patch_os(monkeypatch, "pread", counting_pread)
    assert tail(path, 3) == b"0199997\n0199998\n0199999\n"
    assert sum(read) <= 64 * 1024
    read.clear()
    assert tail(path, 20_000) == b"".join(b"%07d\n" % i for i in range(180_000, 200_000))
    assert sum(read) <= 160_000 + 64 * 1024


def _reference_tail(data: bytes, n: int, budget: int) -> bytes:
    """tail() by its definition: the last n lines, or the last `budget` bytes marked as cut."""
    lines = split_lines(data)[-n:] if n > 0 else []
    whole = b"".join(lines)
    if len(whole) <= budget:
        return whole
    return cut_marker(budget) + whole[-budget:]


def test_tail_of_a_file_without_newlines_is_cut_at_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "x.log"
    path.write_bytes(b"x" * (5 * 2**20))  # one 5 MB line
    read: list[int] = []
    real_pread = os.pread

    def counting_pread(fd: int, n: int, offset: int) -> bytes:
        read.append(n)
        return real_pread(fd, n, offset)

    patch_os(monkeypatch, "pread", counting_pread)
    got = tail(path, 1)
    assert got == b"[stoker] cut: only the last 1 MB are shown\n" + b"x" * 2**20
    assert sum(read) == 2**20 + 1  # one byte more than it returns (is it a newline?)
    assert tail(path, 1, budget=100) == b"[stoker] cut: only the last 0 KB are shown\n" + b"x" * 100
    assert cut_marker(64 * 1024) == b"[stoker] cut: only the last 64 KB are shown\n"


def test_tail_within_the_budget_is_not_cut(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_bytes(b"a" * 99 + b"\n")
    assert tail(path, 1, budget=100) == b"a" * 99 + b"\n"  # exactly the budget: whole
    assert tail(path, 5, budget=100) == b"a" * 99 + b"\n"
    rotated_path(path, 1).write_bytes(b"b\n")  # more before it: now it is cut
    assert tail(path, 2, budget=100) == cut_marker(100) + b"a" * 99 + b"\n"
    assert tail(path, 2, budget=102) == b"b\n" + b"a" * 99 + b"\n"


@given(
    pieces=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=12),
    newline_after=st.lists(st.booleans(), min_size=12, max_size=12),
    splits=st.lists(st.integers(0, 400), max_size=3),
    n=st.integers(0, 15),
    budget=st.integers(1, 200),
)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
def test_tail_agrees_with_its_definition(
    tmp_path: Path, pieces: list[bytes], newline_after: list[bool], splits: list[int], n: int, budget: int
) -> None:
    data = b"".join(p + (b"\n" if nl else b"") for p, nl in zip(pieces, newline_after, strict=False))
    # the same bytes spread over rotated files at arbitrary points
    cuts = sorted({min(s, len(data)) for s in splits})
    parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    path = tmp_path / "t.log"
    for k in range(10):
        rotated_path(path, k).unlink(missing_ok=True)
    for age, part in enumerate(reversed(parts)):
        rotated_path(path, age).write_bytes(part)
    assert tail(path, n, budget=budget) == _reference_tail(data, n, budget), (parts, n, budget)


def test_log_paths_oldest_first(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    assert log_paths(path, 3) == []
    path.write_bytes(b"")
    rotated_path(path, 1).write_bytes(b"")
    rotated_path(path, 3).write_bytes(b"")
    rotated_path(path, 4).write_bytes(b"")  # beyond keep
    assert log_paths(path, 3) == [rotated_path(path, 3), rotated_path(path, 1), path]
    assert rotated_path(path, 0) == path
    assert rotated_path(path, 2).name == "x.log.2"


# -- timestamps --------------------------------------------------------------------------

STAMP = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d ")


def test_timestamp_format_is_local_with_offset(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    clock = FakeClock(datetime(2026, 11, 23, 6, 21, 2, 123_000, tzinfo=UTC).timestamp())
    with (
        timezone("Asia/Shanghai"),
        LogFile(path, max_size=10_000, keep=1, timestamps=True, clock=clock) as lf,
    ):
        lf.write(b"hello\n")
    assert path.read_bytes() == b"2026-11-23T14:21:02.123+08:00 hello\n"


def test_timestamps_across_chunk_splits(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    clock = FakeClock(0.0)
    with (
        timezone("UTC"),
        LogFile(path, max_size=10_000, keep=1, timestamps=True, clock=clock) as lf,
    ):
        lf.write(b"ab")
        clock.now = 1.5
        lf.write(b"c\nde")  # "c" continues the first line: no second prefix
        clock.now = 2.25
        lf.write(b"f\n")
        lf.write(b"\n")  # an empty line still gets its prefix
        clock.now = 3.0
        lf.write(b"g\nh\n")
    assert path.read_bytes() == (
        b"1970-01-01T00:00:00.000+00:00 abc\n"
        b"1970-01-01T00:00:01.500+00:00 def\n"
        b"1970-01-01T00:00:02.250+00:00 \n"
        b"1970-01-01T00:00:03.000+00:00 g\n"
        b"1970-01-01T00:00:03.000+00:00 h\n"
    )


@settings(max_examples=150, deadline=None)
@given(lines=lines_st, cuts=st.lists(st.integers(0, 5_000), max_size=25))
def test_timestamps_property(
    tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(lines)
    path = tmp_path_factory.mktemp("ts") / "x.log"
    clock = FakeClock()
    seen: list[bytes] = []
    with LogFile(path, max_size=1 << 20, keep=1, timestamps=True, clock=clock) as lf:
        lf.add_listener(seen.append)
        for chunk in chunked(stream, cuts):
            clock.now += 0.001
            lf.write(chunk)
    content = path.read_bytes()
    assert b"".join(seen) == content
    out_lines = split_lines(content)
    assert len(out_lines) == len(lines)
    for original, written in zip(lines, out_lines, strict=True):
        m = STAMP.match(written)
        assert m is not None, written
        assert written[m.end() :] == original  # exactly one prefix per line


# -- listeners ---------------------------------------------------------------------------


def test_listeners_get_chunks_as_written(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    a: list[bytes] = []
    b: list[bytes] = []
    with LogFile(path, max_size=10, keep=1) as lf:
        lf.add_listener(a.append)
        lf.write(b"one\n")
        lf.add_listener(b.append)
        lf.write(b"two\nthree\n")  # rotates; listeners still get the whole chunk
        lf.remove_listener(a.append)
        lf.remove_listener(a.append)  # not registered any more: fine
        lf.write(b"four\n")
    assert a == [b"one\n", b"two\nthree\n"]
    assert b == [b"two\nthree\n", b"four\n"]


def test_failing_listener_is_removed_and_logging_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    calls: list[bytes] = []
    good: list[bytes] = []

    def bad(chunk: bytes) -> None:
        calls.append(chunk)
        raise RuntimeError("client went away")

    with LogFile(path, max_size=1000, keep=1) as lf:
        lf.add_listener(bad)
        lf.add_listener(good.append)
        lf.write(b"a\n")
        lf.write(b"b\n")
    assert calls == [b"a\n"]
    assert good == [b"a\n", b"b\n"]
    assert path.read_bytes() == b"a\nb\n"


def test_listener_may_remove_itself(tmp_path: Path) -> None:
    lf = LogFile(tmp_path / "x.log", max_size=1000, keep=1)
    got: list[bytes] = []

    def once(chunk: bytes) -> None:
        got.append(chunk)
        lf.remove_listener(once)

    lf.add_listener(once)
    lf.write(b"a\n")
    lf.write(b"b\n")
    assert got == [b"a\n"]
    lf.close()


# -- disk trouble ------------------------------------------------------------------------


class FlakyDisk:
    """Replaces os.write for the logs module: fails, or writes short, on demand."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.real = os.write
        self.error: int | None = None
        self.budget: int | None = None  # bytes that still fit before ENOSPC
        self.max_per_call: int | None = None
        patch_os(monkeypatch, "write", self)

    def __call__(self, fd: int, data: bytes | memoryview) -> int:
        if self.error is not None:
            raise OSError(self.error, os.strerror(self.error))
        view = memoryview(data)
        if self.max_per_call is not None:
            view = view[: self.max_per_call]
        if self.budget is not None:
            if self.budget == 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            view = view[: self.budget]
            self.budget -= len(view)
        return self.real(fd, view)


def test_short_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = FlakyDisk(monkeypatch)
    disk.max_per_call = 3
    path = tmp_path / "x.log"
    with LogFile(path, max_size=20, keep=10) as lf:
        data = b"".join(b"line %d\n" % i for i in range(10))
        lf.write(data)
        assert lf.dropped_bytes == 0
    assert on_disk(path, 10) == layout(data, 20)


def test_disk_full_then_recovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = FlakyDisk(monkeypatch)
    path = tmp_path / "x.log"
    with LogFile(path, max_size=10_000, keep=1) as lf:
        lf.write(b"before\n")
        disk.error = errno.ENOSPC
        lf.write(b"lost one\n")  # 9 bytes
        lf.write(b"lost two\n")  # 9 bytes
        assert lf.dropped_bytes == 18
        assert lf.error is not None and lf.error.errno == errno.ENOSPC
        disk.error = None
        lf.write(b"after\n")
        assert lf.error is None
        assert lf.dropped_bytes == 18
        lf.write(b"more\n")
    assert path.read_bytes() == (
        b"before\n[stoker] 18 bytes of output were lost (No space left on device)\nafter\nmore\n"
    )


def test_disk_fills_mid_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = FlakyDisk(monkeypatch)
    path = tmp_path / "x.log"
    with LogFile(path, max_size=10_000, keep=1) as lf:
        disk.budget = 5
        lf.write(b"abc\ndefgh\n")  # "abc\nd" fits, 5 bytes do not
        assert lf.dropped_bytes == 5
        disk.budget = None
        lf.write(b"next\n")
    # The marker starts its own line although the file stopped mid-line.
    assert path.read_bytes() == (
        b"abc\nd\n[stoker] 5 bytes of output were lost (No space left on device)\nnext\n"
    )


def test_marker_retried_while_disk_stays_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = FlakyDisk(monkeypatch)
    path = tmp_path / "x.log"
    seen: list[bytes] = []
    with LogFile(path, max_size=10_000, keep=1) as lf:
        lf.add_listener(seen.append)
        disk.error = errno.ENOSPC
        for _ in range(5):
            lf.write(b"0123456789")  # each retry fails, marker included
        assert lf.dropped_bytes == 50
        disk.error = None
        lf.write(b"ok\n")
        assert lf.dropped_bytes == 50
    assert path.read_bytes() == (b"[stoker] 50 bytes of output were lost (No space left on device)\nok\n")
    # Followers saw the output the disk refused, and no marker.
    assert seen == [b"0123456789"] * 5 + [b"ok\n"]


def test_disk_full_with_timestamps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = FlakyDisk(monkeypatch)
    path = tmp_path / "x.log"
    clock = FakeClock(0.0)
    with (
        timezone("UTC"),
        LogFile(path, max_size=10_000, keep=1, timestamps=True, clock=clock) as lf,
    ):
        lf.write(b"a\n")
        disk.error = errno.EIO
        lf.write(b"partial")  # lost mid-line
        disk.error = None
        clock.now = 1.0
        lf.write(b" rest\n")
    prefix0 = b"1970-01-01T00:00:00.000+00:00 "
    prefix1 = b"1970-01-01T00:00:01.000+00:00 "
    lost = len(prefix0 + b"partial")
    assert path.read_bytes() == (
        prefix0
        + b"a\n"
        + prefix1
        + b"[stoker] %d bytes of output were lost (Input/output error)\n" % lost
        + prefix1
        + b" rest\n"
    )


def test_disk_full_during_rotation_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = FlakyDisk(monkeypatch)
    path = tmp_path / "x.log"
    with LogFile(path, max_size=80, keep=2) as lf:
        lf.write(b"a" * 50 + b"\n" + b"b" * 10)
        disk.error = errno.ENOSPC
        lf.write(b"b" * 30 + b"\n")  # must move the b's to a fresh file, which fails
        assert lf.dropped_bytes == 31
        disk.error = None
        lf.write(b"c\n")
    # The b's stay where they were (not doubled, not lost); the gap is marked.
    assert on_disk(path, 2) == [
        b"a" * 50 + b"\n" + b"b" * 10,
        b"[stoker] 31 bytes of output were lost (No space left on device)\nc\n",
    ]


def test_rename_failure_does_not_raise_or_lose_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.log"

    def refuse(src: object, dst: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    with LogFile(path, max_size=8, keep=2) as lf:
        patch_os(monkeypatch, "replace", refuse)
        for i in range(5):
            lf.write(b"l%d\n" % i)  # cannot rotate: the file grows past max_size
        assert path.read_bytes() == b"l0\nl1\nl2\nl3\nl4\n"
        assert lf.dropped_bytes == 0
        monkeypatch.undo()
        lf.write(b"l5\n")  # rotation works again
    assert on_disk(path, 2) == [b"l0\nl1\nl2\nl3\nl4\n", b"l5\n"]


def test_unlink_failure_with_keep_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.log"

    def refuse(p: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    with LogFile(path, max_size=4, keep=0) as lf:
        patch_os(monkeypatch, "unlink", refuse)
        lf.write(b"ab\ncd\n")
        monkeypatch.undo()
        lf.write(b"ef\n")
    assert path.read_bytes() == b"ef\n"


def test_unopenable_log_recovers(tmp_path: Path) -> None:
    blocker = tmp_path / "logs"
    blocker.write_bytes(b"")  # a file where the log directory should be
    path = blocker / "x.log"
    lf = LogFile(path, max_size=100, keep=1)  # does not raise
    assert lf.error is not None
    lf.write(b"dropped\n")
    assert lf.dropped_bytes == 8
    blocker.unlink()
    lf.write(b"kept\n")
    assert lf.error is None
    lf.close()
    assert path.read_bytes() == b"[stoker] 8 bytes of output were lost (File exists)\nkept\n"


def test_open_failure_during_rotation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.log"
    real_open = os.open
    failing = {"on": False}

    def flaky_open(p: str, flags: int, mode: int = 0o777) -> int:
        if failing["on"]:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return real_open(p, flags, mode)

    patch_os(monkeypatch, "open", flaky_open)
    a, b, c = (ch * 49 + b"\n" for ch in (b"a", b"b", b"c"))
    with LogFile(path, max_size=80, keep=2) as lf:
        lf.write(a)
        failing["on"] = True
        lf.write(b)  # rotates, cannot reopen: dropped
        assert lf.error is not None
        lf.write(c)  # still cannot open: dropped
        assert lf.dropped_bytes == 100
        failing["on"] = False
        lf.write(b"d\n")
    marker = b"[stoker] 100 bytes of output were lost (Too many open files)\n"
    assert on_disk(path, 2) == [a, marker + b"d\n"]


@settings(max_examples=150, deadline=None)
@given(
    lines=lines_st,
    cuts=st.lists(st.integers(0, 5_000), max_size=25),
    failures=st.lists(st.booleans(), max_size=40),
    max_size=st.integers(16, 200),
)
def test_disk_trouble_property(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[bytes],
    cuts: list[int],
    failures: list[bool],
    max_size: int,
) -> None:
    """Whatever fails when, nothing raises, and what survives is output or a marker."""
    root = tmp_path_factory.mktemp("full")
    path = root / "x.log"
    stream = b"".join(lines)
    chunks = chunked(stream, cuts)
    mp = pytest.MonkeyPatch()
    try:
        disk = FlakyDisk(mp)
        with LogFile(path, max_size=max_size, keep=1000) as lf:
            for i, chunk in enumerate(chunks):
                disk.error = errno.ENOSPC if i < len(failures) and failures[i] else None
                lf.write(chunk)
            disk.error = None
            lf.write(b"END\n")
            dropped = lf.dropped_bytes
    finally:
        mp.undo()
    content = b"".join(on_disk(path, 1000))
    assert content.endswith(b"END\n")
    markers = re.findall(rb"\[stoker\] (\d+) bytes of output were lost \([^)]*\)\n", content)
    assert sum(int(m) for m in markers) == dropped
    marker_bytes = sum(
        len(m.group(0))
        for m in re.finditer(rb"\[stoker\] \d+ bytes of output were lost \([^)]*\)\n", content)
    )
    # Each marker may add one newline to end a line the outage cut short.
    extra = len(content) - marker_bytes - (len(stream) + 4 - dropped)
    assert 0 <= extra <= len(markers)
    if dropped == 0:
        assert content == stream + b"END\n"


def test_close_records_a_pending_gap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = FlakyDisk(monkeypatch)
    path = tmp_path / "x.log"
    lf = LogFile(path, max_size=1000, keep=1)
    lf.write(b"a\n")
    disk.error = errno.ENOSPC
    lf.write(b"bb\n")
    disk.error = None
    lf.close()  # no write came after the outage: close marks it
    assert path.read_bytes() == b"a\n[stoker] 3 bytes of output were lost (No space left on device)\n"


# -- markers -----------------------------------------------------------------------------


def test_a_marker_is_a_line_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    clock = FakeClock(0.0)
    seen: list[bytes] = []
    with timezone("UTC"), LogFile(path, max_size=10_000, keep=1, markers=True, clock=clock) as lf:
        lf.add_listener(seen.append)
        lf.mark("started pid 7")
        lf.write(b"half a li")  # the run ends mid-line: the marker ends it first
        clock.now = 1.5
        lf.mark("pid 7 exited with code 1")
    assert path.read_bytes() == (
        b"--- started pid 7 at 1970-01-01T00:00:00.000+00:00 ---\n"
        b"half a li\n"
        b"--- pid 7 exited with code 1 at 1970-01-01T00:00:01.500+00:00 ---\n"
    )
    assert b"".join(seen) == path.read_bytes()  # `stoker logs -f` sees them too


def test_a_marker_with_timestamps_and_a_file_left_mid_line(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_bytes(b"an earlier daemon's run, cut")
    with (
        timezone("UTC"),
        LogFile(path, max_size=10_000, keep=1, timestamps=True, markers=True, clock=FakeClock(2.0)) as lf,
    ):
        lf.mark("started pid 8")
        lf.write(b"up\n")
    assert path.read_bytes() == (
        b"an earlier daemon's run, cut\n"
        b"1970-01-01T00:00:02.000+00:00 --- started pid 8 ---\n"
        b"1970-01-01T00:00:02.000+00:00 up\n"
    )


def test_no_markers_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    with LogFile(path, max_size=10_000, keep=1) as lf:
        lf.mark("started pid 9")
        lf.write(b"raw\n")
    assert path.read_bytes() == b"raw\n"
