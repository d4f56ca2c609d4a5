"""The starter stoker.toml that ``stoker init`` writes: every key, commented, with examples."""

STARTER_TOML = """\
# stoker.toml: what stoker keeps running on this machine.
# Check it with `stoker check`, start everything with `stoker up`.
# Paths are relative to this file's folder. Durations: "250ms", "10s", "5m", "2h", "1d" or
# seconds. Sizes: "512KB", "50MB", "1GB" or bytes (1KB = 1024 bytes).
# Remove the leading "# " of a setting to use it; the values shown are examples.

[daemon]
# state_dir = ".stoker"            # socket, pid file, database and logs
# listen = "127.0.0.1:9100"        # HTTP API + dashboard over TCP (off by default)
# token = "env:STOKER_TOKEN"       # literal, "env:NAME" or "file:PATH"; unset: made (loopback only)
# store = "sqlite"                 # or "postgresql://user@host/db"
# node = "web-1"                   # this machine's name (default: the hostname)
# timezone = "UTC"                 # default zone for schedules (default: the system zone)
# shutdown_timeout = "30s"         # how long running jobs may finish when the daemon stops
# keep_jobs = "7d"                 # finished jobs older than this are deleted
# worker_max_jobs = 10000          # jobs a Python worker runs before a fresh one replaces it
# node_timeout = "30s"             # PostgreSQL: a node silent this long is dead; others re-queue its jobs
# history = true                   # a day of figures for the dashboard's charts and stoker top

# A long-running program, in any language. Replace it with your own.
[programs.worker]
command = ["sh", "-c", 'while true; do echo "worker $STOKER_INSTANCE is working"; sleep 5; done']
# A command can also be one string, split like a shell line (no shell runs it):
# command = "php artisan queue:work --queue=default"
# shell = false                    # true: run the command string with /bin/sh -c
# instances = 1                    # >1 runs worker:0 … worker:N-1; "{instance}" expands
# directory = "."                  # working directory
# environment = { APP_ENV = "production", WORKER_ID = "{instance}" }
# inherit_environment = true       # false: a clean environment (PATH, LANG…), not the daemon's
# env_file = ".env"                # KEY=VALUE lines, read at each start; environment wins over it
# user = "www-data"                # drop privileges (when the daemon runs as root): its groups, HOME…
# group = "www-data"
# umask = "022"
# autostart = true                 # start with `stoker up`
# restart = "always"               # always | on-failure | never
# success_exit_codes = [0]         # exits that are not failures (for on-failure)
# start_seconds = "1s"             # must stay up this long to count as started
# stable_seconds = "1m"            # a run this long ends a crash loop (crashes restart at once again)
# backoff = { min = "1s", max = "60s" }   # delay between failed starts (and crashes in a loop), doubling
# max_restarts = 0                 # restarts of a failed start before giving up; 0 = never
# stop_signal = "TERM"             # sent to the whole process group to stop it
# stop_timeout = "10s"             # then SIGKILL
# log = { max_size = "50MB", keep = 10, stderr = "merge", timestamps = true, markers = true }
#   (and file = "/var/log/worker.{instance}.log", stderr_file = …: your own paths, rotated
#   alike; "/dev/stdout" or "/dev/stderr": the daemon's own, as in a container; "/dev/null")
# cron_restart = "0 4 * * *"      # also restart it at these times (cron, [daemon] timezone)
# depends_on = ["redis"]           # start once these programs are running; stop before them
# ready = "tcp:8080"               # running once this passes: "tcp:PORT", "http://…/health", "notify"
# ready_timeout = "60s"            # not ready by then: a failed start
# watchdog = "30s"                 # with sd_notify: restart it when WATCHDOG=1 pings stop this long
# max_memory = "512MB"             # RSS of its process tree; above it, a graceful restart
# memory_max = "1GB"               # the kernel's hard limit (cgroup): above it, its OOM killer acts
# cpu_weight = 50                  # its share of the CPU when busy (cgroup; 100 = an equal share)
# tasks_max = 64                   # processes and threads at most (cgroup): a fork beyond fails
# watch = ["."]                    # restart when files under these paths change
# watch_ignore = ["*.log"]         # changes to these (glob patterns) do not count
# singleton = true                 # cluster (PostgreSQL): one node runs it at a time; failover
# nodes = ["web-*"]                # only nodes whose [daemon] node matches run it
# groups = ["queue"]               # `stoker restart queue:*` acts on every program of the group
# stop_daemon_on_exit = false      # true: its end (exited, not restarted) stops the daemon (containers)

# A job a web app hands off: `stoker enqueue report day=monday`, or POST /api/v1/jobs with
# {"task": "report", "params": {"day": "monday"}}. Only tasks named here can ever run.
[tasks.report]
command = "php report.php {day}"   # {day}: a parameter; it fills one argument, never a shell
# call = "myapp.reports:build"     # or a Python function, run in a warm worker pool
# queue = "default"                # where its jobs wait
# params = ["format"]              # optional parameters besides the {placeholders}
# max_attempts = 3                 # 1 = no retry
# backoff = { min = "10s", max = "10m" }  # delay before a retry, doubling
# timeout = "10m"                  # then the attempt is stopped and counts as failed
# stop_timeout = "10s"             # after SIGTERM (timeout, cancel), SIGKILL
# max_params = "64KB"              # a job's parameters as JSON; larger ones are refused
# max_output = "100MB"             # an attempt's output file; the rest is cut, with a marker line
# Rules for {day}, checked before any job is stored: a [tasks.report.params.day] table (instead
# of the params list) with choices = ["monday", "friday"], or a pattern, or type = "int" with
# min and max, a default… A value that would begin an argument with "-" is refused unless the
# parameter has allow_option = true. See docs/configuration.md, "Typed parameters".

[queues.default]
# concurrency = 2                  # jobs of this queue at once (default 1)
# durability = "relaxed"           # no wait for the disk: faster; a power cut may lose the last jobs

# [notify.ops]                     # a webhook: POSTs a JSON object when something needs a person
# url = "env:OPS_HOOK_URL"         # or a literal https:// URL, or "file:PATH"
# events = ["program_fatal", "crash_loop", "job_failed", "schedule_missed"]   # the default: all four
# headers = { Authorization = "env:OPS_HOOK_TOKEN" }
"""
