"""max_output: a job's output file held to its cap by truncation (stoker.jobs.output.OutputCap)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stoker.jobs.output import OutputCap, close_output, current_output, open_output


def appender(path: Path) -> int:
    """A descriptor like the one a job writes through: O_APPEND."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


def test_a_file_within_its_cap_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "1.log"
    path.write_bytes(b"x" * 100)
    cap = OutputCap(str(path), 0, 100)
    cap.check()
    assert not cap.finish()
    assert path.read_bytes() == b"x" * 100


def test_a_missing_file_is_nothing_to_cut(tmp_path: Path) -> None:
    cap = OutputCap(str(tmp_path / "none.log"), 0, 10)
    cap.check()
    assert not cap.finish()
    assert not (tmp_path / "none.log").exists()


def test_what_passes_the_cap_is_cut_and_counted_and_later_writes_land_at_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "1.log"
    fd = appender(path)
    try:
        os.write(fd, b"a" * 150)
        cap = OutputCap(str(path), 0, 100)
        cap.check()
        assert path.read_bytes() == b"a" * 100 and cap.cut == 50
        os.write(fd, b"b" * 30)  # the job writes on: an append, at the cap (no hole)
        assert path.read_bytes() == b"a" * 100 + b"b" * 30
        cap.check()
        assert path.stat().st_size == 100 and cap.cut == 80
        os.write(fd, b"c" * 5)
    finally:
        os.close(fd)
    assert cap.finish()
    assert path.read_bytes() == b"a" * 100 + b"\n[stoker] output over max_output (100B): 85 bytes cut\n"


def test_the_cap_counts_from_where_the_attempt_began(tmp_path: Path) -> None:
    path = tmp_path / "1.log"
    path.write_bytes(b"first attempt\n")
    start = path.stat().st_size
    fd, offset = open_output(str(path), 2, False, 0.0)
    os.write(fd, b"y" * 3000)
    cap = OutputCap(str(path), start, 2048)
    assert cap.finish()
    data = path.read_bytes()
    assert data.startswith(b"first attempt\n\n--- stoker: attempt 2")
    cut = (offset - start) + 3000 - 2048  # the attempt's marker line counts too
    marker = f"\n[stoker] output over max_output (2KB): {cut} bytes cut\n".encode()
    assert data == data[: start + 2048] + marker
    text, written = close_output(fd, str(path), offset)
    assert written == start + 2048 + len(marker) - offset
    assert text.endswith(marker.decode()) and current_output(str(path)).endswith(marker.decode())


@given(writes=st.lists(st.tuples(st.integers(0, 300), st.booleans()), max_size=20), limit=st.integers(1, 500))
def test_the_file_ends_as_its_first_limit_bytes_and_a_true_count(
    tmp_path_factory: object, writes: list[tuple[int, bool]], limit: int
) -> None:
    """Any interleaving of writes and looks: at the end, the first `limit` bytes written, then
    the marker with exactly how many bytes were cut (none: the file as written)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "1.log"
        fd = appender(path)
        written = b""
        cap = OutputCap(str(path), 0, limit)
        try:
            for i, (n, look) in enumerate(writes):
                piece = bytes([97 + i % 26]) * n
                os.write(fd, piece)
                written += piece
                if look:
                    cap.check()
        finally:
            os.close(fd)
        cut = cap.finish()
        data = path.read_bytes()
    if len(written) <= limit:
        assert not cut and data == written
    else:
        marker = f"\n[stoker] output over max_output ({limit}B): {len(written) - limit} bytes cut\n"
        if limit % 1024 == 0:
            marker = (
                f"\n[stoker] output over max_output ({limit // 1024}KB): {len(written) - limit} bytes cut\n"
            )
        assert cut and data == written[:limit] + marker.encode()


def test_a_planted_link_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"v" * 1000)
    path = tmp_path / "1.log"
    path.symlink_to(victim)
    cap = OutputCap(str(path), 0, 10)
    with pytest.raises(OSError):
        cap.check()
    assert victim.read_bytes() == b"v" * 1000
