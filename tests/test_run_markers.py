"""Program logs tell runs apart (issue 19): stoker's own log files carry a timestamp on each
line and a marker line at each start and exit, `stoker logs` shows them; `log.timestamps` and
`log.markers` turn them off per program; a file you chose (log.file) gets the program's bytes
unchanged. Real programs, real restarts."""

from __future__ import annotations

import re
import sys

from conftest import STAMP, Stoker, output_of, wait_for

PY = sys.executable
RUN = "import sys, time; print('run', flush=True); time.sleep(0.3); sys.exit(1)"


def test_runs_are_told_apart_in_the_log(stoker: Stoker) -> None:
    shipped = stoker.root / "shipped.log"
    stoker.write(
        f"""
        [programs.crashy]
        command = ["{PY}", "-c", "{RUN}"]
        start_seconds = "0.1s"
        stable_seconds = "0.2s"             # each run is stable: restarted at once, no backoff
        [programs.plain]
        command = ["{PY}", "-c", "{RUN}"]
        start_seconds = "0.1s"
        stable_seconds = "0.2s"
        log = {{ timestamps = false }}
        [programs.bare]
        command = ["{PY}", "-c", "{RUN}"]
        start_seconds = "0.1s"
        stable_seconds = "0.2s"
        log = {{ timestamps = false, markers = false }}
        [programs.shipped]
        command = ["{PY}", "-c", "{RUN}"]
        start_seconds = "0.1s"
        stable_seconds = "0.2s"
        log = {{ file = "{shipped}" }}
        """
    )
    stoker.up()

    def runs(name: str) -> str | None:
        text = stoker.cli("logs", name, "-n", "100").stdout
        return text if text.count("exited with code 1") >= 2 else None

    text = wait_for(lambda: runs("crashy"), what="two runs of crashy")
    lines = text.splitlines()
    assert all(STAMP.match(line + "\n") for line in lines), text  # every line: its time
    body = [STAMP.sub("", line) for line in lines]
    starts = [m for line in body if (m := re.fullmatch(r"--- started pid (\d+) ---", line))]
    ends = [m for line in body if (m := re.fullmatch(r"--- pid (\d+) exited with code 1 ---", line))]
    assert len(starts) >= 2 and len(ends) >= 2, text
    assert body[:3] == [starts[0].group(0), "run", ends[0].group(0)]
    assert starts[0].group(1) == ends[0].group(1) != starts[1].group(1)  # run by run, pid by pid
    assert output_of(text).startswith("run\nrun\n")

    plain = wait_for(lambda: runs("plain"), what="two runs of plain").splitlines()
    assert re.fullmatch(r"--- started pid \d+ at \d{4}-\d\d-\d\dT[\d:.]+[+-]\d\d:\d\d ---", plain[0]), plain
    assert plain[1] == "run"

    wait_for(lambda: stoker.programs()["bare:0"]["restarts"] >= 2, what="bare to restart")
    assert set(stoker.cli("logs", "bare", "-n", "100").stdout.splitlines()) == {"run"}
    wait_for(lambda: stoker.programs()["shipped:0"]["restarts"] >= 2, what="shipped to restart")
    assert set(shipped.read_text().splitlines()) == {"run"}  # what a log shipper expects
