"""Printed by `make demo` before the daemon starts: where to look (the dashboard first)."""

from pathlib import Path

from stoker.config import load_config
from stoker.daemon.token import made_token, token_file

here = Path(__file__).resolve().parent
config = here / "stoker.toml"
root = here.parent.parent
stoker = (root / ".venv" / "bin" / "stoker").relative_to(root)
rel = config.relative_to(root)
daemon = load_config(config).daemon
state_dir = Path(daemon.state_dir)
state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
# The token the dashboard asks for: the daemon makes it at its first start; made here (the same
# way, in the same file) so that it can be shown before the daemon runs.
token = made_token(state_dir)
print(
    f"""
stoker demo: the daemon runs in the foreground on {rel} (Ctrl-C stops it and every program).

  Dashboard:  http://{daemon.listen}/
  Token:      {token}
              (kept in {token_file(state_dir).relative_to(root)}; the page asks for it once per tab)

In another terminal, from {root}:

  {stoker} -c {rel} status            what runs: state, pid, uptime, restarts, memory
  {stoker} -c {rel} logs flaky -f     a worker that crashes now and then, and says why
  {stoker} -c {rel} restart crawler   ten instances of one program, each as it comes back
  {stoker} -c {rel} enqueue report day=monday --wait
                                                        a job: retried when it fails, output kept
  {stoker} -c {rel} jobs              every job (a schedule adds one every 20 s)
  {stoker} -c {rel} schedules         the cron replacement: next and last runs
  nc 127.0.0.1 7070                                     a TCP line server (help, time, quit)

Program logs: {(state_dir / "logs").relative_to(root)}/
"""
)
