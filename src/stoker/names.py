"""The names of what the daemon keeps in its state dir ([daemon] state_dir), spelled once.

stoker.sock   the control API's unix socket (0600)
stoker.lock   held (flock) while a daemon runs: one daemon per state dir
stoker.pid    the running daemon's pid, for `stoker status` and signals
stoker.log    the detached daemon's own log (`stoker up -d`)
stoker.db     the SQLite store (jobs, attempts, schedules' slots, pauses)
token         the API token the daemon made, when [daemon] listen has none
stopped.json  the program instances stopped by hand (kept stopped across restarts)
notify.sock   where programs' sd_notify messages arrive (READY=1, STATUS=…)
logs/         program instances' output; logs/jobs/ each job's output
"""

SOCKET = "stoker.sock"
LOCK = "stoker.lock"
PID = "stoker.pid"
DAEMON_LOG = "stoker.log"
DATABASE = "stoker.db"
TOKEN = "token"
STOPPED = "stopped.json"
NOTIFY_SOCKET = "notify.sock"
LOGS = "logs"
JOB_LOGS = "jobs"  # under LOGS
