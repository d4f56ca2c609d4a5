"""Printed by `make demo` before the daemon starts: where to look."""

from pathlib import Path

here = Path(__file__).resolve().parent
config = here / "stoker.toml"
root = here.parent.parent
stoker = root / ".venv" / "bin" / "stoker"
rel = config.relative_to(root)
print(
    f"""
stoker demo: the daemon runs in the foreground on {rel} (Ctrl-C stops it and every program).
In another terminal, from {root}:

  {stoker.relative_to(root)} -c {rel} status            what runs: state, pid, uptime, restarts, memory
  {stoker.relative_to(root)} -c {rel} logs flaky -f     a worker that crashes now and then
  {stoker.relative_to(root)} -c {rel} restart crawler   ten instances of one program
  {stoker.relative_to(root)} -c {rel} enqueue report day=monday --wait
                                                        a job: retried when it fails, output kept
  {stoker.relative_to(root)} -c {rel} jobs              every job, its state and attempts
  nc 127.0.0.1 7070                                     a TCP line server (help, time, quit)

Program logs: {(here / ".stoker" / "logs").relative_to(root)}/
"""
)
