"""`stoker import`: supervisord, pm2 and Procfile files become a commented stoker.toml.

Realistic inputs go through the real CLI; each output is read back with tomllib, validated by
`stoker check` run as a process, and every option that has no stoker equivalent must show up
in a comment. One supervisord.conf is imported and run by a real daemon. The pure pieces
(supervisord's environment syntax and %(..)s expansion, the restart mapping, durations, the
TOML writer, the JavaScript reader) are tested on their own.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest
from conftest import Stoker, wait_for
from hypothesis import given
from hypothesis import strategies as st

from stoker.importing import InputError, Machine, convert, detect_format, js, procfile, supervisord
from stoker.importing.model import Converted, Program, Setting, duration_from_ms, program_name, seconds
from stoker.importing.toml_writer import key, refused, render, string, value

MACHINE = Machine(environ={"HOME": "/home/forge", "APP_ROOT": "/srv/app"}, hostname="web-1", cpu_count=4)


def stoker_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stoker", *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )


def import_to_toml(source: Path, *extra: str) -> tuple[str, dict[str, Any]]:
    """`stoker import SOURCE` → (the text, tomllib's reading of it); then `stoker check` on it
    must pass, as a separate process, with the output saved beside the source."""
    result = stoker_cli("import", str(source), *extra, cwd=source.parent)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    data = tomllib.loads(result.stdout)
    target = source.parent / "stoker.toml"
    target.write_text(result.stdout)
    checked = stoker_cli("-c", str(target), "check", cwd=source.parent)
    assert checked.returncode == 0, checked.stderr + "\n" + result.stdout
    return result.stdout, data


def comments(text: str) -> str:
    """Every comment of a TOML text as one line (wrapped notes joined again)."""
    found = []
    for line in text.splitlines():
        if line.startswith("#"):
            found.append(line.lstrip("#").strip())
        elif "  # " in line:
            found.append(line.split("  # ", 1)[1])
    return " ".join(found)


# ----------------------------------------------------------------------------------------------
# supervisord
# ----------------------------------------------------------------------------------------------

SUPERVISORD_CONF = """\
; supervisor config file, as Debian's package and Laravel Forge write it

[unix_http_server]
file=/var/run/supervisor.sock   ; (the path to the socket file)
chmod=0700                       ; socket file mode (default 0700)

[inet_http_server]
port=127.0.0.1:9001
username=admin
password=s3cret-pass

[supervisord]
logfile=/var/log/supervisor/supervisord.log ; (main log file;default $CWD/supervisord.log)
pidfile=/var/run/supervisord.pid ; (supervisord pidfile;default supervisord.pid)
childlogdir=/var/log/supervisor            ; ('AUTO' child log dir, default $TEMP)
minfds=4096
environment=APP_ENV="production",TZ=UTC

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix:///var/run/supervisor.sock ; use a unix:// URL  for a unix socket

[program:laravel-worker]
process_name=%(program_name)s_%(process_num)02d
command=php %(here)s/artisan queue:work sqs --sleep=3 --tries=3 --max-time=3600
autostart=true
autorestart=true
stopasgroup=true
killasgroup=true
user=forge
numprocs=8
redirect_stderr=true
stdout_logfile=%(ENV_HOME)s/app.com/worker.log
stopwaitsecs=3600

[program:api]
command=/srv/venv/bin/gunicorn app:wsgi -b 127.0.0.1:80%(process_num)02d --workers 2
directory=%(here)s
environment=PYTHONPATH="%(here)s/src",WORKER_ID=%(process_num)d,DSN="postgres://u:p@db/app?a=1,b=2"
numprocs=2
process_name=%(program_name)s-%(process_num)d
priority=10
startsecs=5
startretries=10
exitcodes=0,2
stopsignal=QUIT
stdout_logfile=/var/log/api.out.log
stdout_logfile_maxbytes=20MB
stdout_logfile_backups=5
stderr_logfile=/var/log/api.err.log
stderr_logfile_maxbytes=1MB
umask=022
serverurl=AUTO

[program:cron-ish]
command=/usr/bin/env sh -c "while sleep 60; do php %(here)s/artisan schedule:run; done"
autorestart=unexpected
startretries=0
stdout_events_enabled=true

[group:web]
programs=api,laravel-worker
priority=999

[eventlistener:crashmail]
command=/usr/local/bin/crashmail -a -m ops@example.com
events=PROCESS_STATE_EXITED

[include]
files = conf.d/*.conf
"""

# supervisord option → the stoker key it becomes (anything else must be in a comment)
SUPERVISORD_KEYS = {
    "command": "command",
    "numprocs": "instances",
    "directory": "directory",
    "environment": "environment",
    "user": "user",
    "umask": "umask",
    "autostart": "autostart",
    "autorestart": "restart",
    "exitcodes": "success_exit_codes",
    "startsecs": "start_seconds",
    "startretries": "max_restarts",
    "stopsignal": "stop_signal",
    "stopwaitsecs": "stop_timeout",
    "redirect_stderr": "log",
    "stdout_logfile_maxbytes": "log",
    "stdout_logfile_backups": "log",
    "stdout_logfile": "log",
    "stderr_logfile": "log",
}


def test_supervisord_conf_becomes_programs(tmp_path: Path) -> None:
    conf = tmp_path / "supervisord.conf"
    conf.write_text(SUPERVISORD_CONF)
    text, data = import_to_toml(conf)
    here = str(tmp_path)
    programs = data["programs"]
    assert list(programs) == ["api", "laravel-worker", "cron-ish"]  # priority 10 first
    api = programs["api"]
    assert api["command"] == "/srv/venv/bin/gunicorn app:wsgi -b 127.0.0.1:800{instance} --workers 2"
    assert api["instances"] == 2
    assert api["directory"] == here
    assert api["environment"] == {
        "APP_ENV": "production",  # [supervisord] environment, under the program's own
        "TZ": "UTC",
        "PYTHONPATH": f"{here}/src",
        "WORKER_ID": "{instance}",
        "DSN": "postgres://u:p@db/app?a=1,b=2",
    }
    assert api["restart"] == "on-failure"  # supervisord's default autorestart=unexpected
    assert api["success_exit_codes"] == [0, 2]
    assert api["start_seconds"] == "5s"
    assert api["max_restarts"] == 10
    assert api["stop_signal"] == "QUIT"
    assert api["umask"] == "022"
    assert api["log"] == {
        "stderr": "separate",
        "max_size": "20MB",
        "keep": 5,
        # the paths supervisord wrote, one file per instance (each rotates its own)
        "file": "/var/log/api.out.{instance}.log",
        "stderr_file": "/var/log/api.err.{instance}.log",
    }
    worker = programs["laravel-worker"]
    assert worker["command"] == f"php {here}/artisan queue:work sqs --sleep=3 --tries=3 --max-time=3600"
    assert worker["instances"] == 8
    assert worker["user"] == "forge"
    assert worker["restart"] == "always"
    assert worker["max_restarts"] == 3  # supervisord's default startretries
    assert worker["stop_timeout"] == "1h"
    assert worker["log"] == {
        "stderr": "merge",
        "file": f"{os.environ['HOME']}/app.com/worker.{{instance}}.log",
    }
    assert "directory" not in worker
    assert worker["groups"] == api["groups"] == ["web"]  # [group:web] programs=api,laravel-worker
    cron = programs["cron-ish"]
    assert cron["command"] == f'/usr/bin/env sh -c "while sleep 60; do php {here}/artisan schedule:run; done"'
    assert cron["max_restarts"] == 1  # startretries=0: no "0" in stoker (0 = never give up)
    # the password of [inet_http_server] is not copied into the new file
    assert "s3cret-pass" not in text


def test_supervisord_options_without_equivalent_are_comments(tmp_path: Path) -> None:
    conf = tmp_path / "supervisord.conf"
    conf.write_text(SUPERVISORD_CONF)
    text, data = import_to_toml(conf)
    said = comments(text)
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=False)
    parser.read_string(SUPERVISORD_CONF)
    for section in parser.sections():
        kind, _, name = section.partition(":")
        if kind != "program":
            assert f"[{section}]" in said, section
            continue
        table = data["programs"][name]
        for option in parser.options(section):
            mapped = SUPERVISORD_KEYS.get(option)
            if mapped is not None and mapped in table:
                continue
            assert f"{option}=" in said, f"[{section}] {option} is neither a setting nor a comment"
    # and they say what stoker has instead
    for hint in [
        '[daemon] listen = "127.0.0.1:9001"',
        '[daemon] token = "env:STOKER_TOKEN"',
        "<state_dir>/stoker.sock",
        "<state_dir>/stoker.pid",
        "GET /api/v1/events",
        "`stoker start|stop|restart web:*`",
        "[include] conf.d/*.conf: matched no file here.",
        "depends_on",
        "stoker always signals the whole process group",
        "stdout_logfile=/var/log/api.out.log: one file per instance here (api.out.{instance}.log)",
        "LimitNOFILE=",
        "stoker names the instances laravel-worker:0",
        "%(ENV_HOME)s: expanded with the environment of `stoker import`",
    ]:
        assert hint in said, hint
    # the zero padding of %(process_num)02d is kept while instance numbers have one digit
    assert "without the zero padding" not in said


def test_supervisord_zero_padding_beyond_ten_instances_is_noted(tmp_path: Path) -> None:
    conf = tmp_path / "many.conf"
    conf.write_text("[program:w]\ncommand=work --id %(process_num)03d\nnumprocs=12\n")
    text, data = import_to_toml(conf)
    assert data["programs"]["w"]["command"] == "work --id {instance}"
    assert "%(process_num)03d is written {instance}, without the zero padding" in comments(text)


def test_supervisord_conf_imported_and_run(stoker: Stoker) -> None:
    """The end-to-end promise: import a supervisord.conf, start stoker on the result, and the
    programs run with the environment, instances and directory supervisord would have given."""
    root = stoker.root
    (root / "ticker.py").write_text(
        textwrap.dedent(
            """\
            import os, sys, time
            print("tick", sys.argv[1], os.environ["GREETING"], os.environ["WORKER"], os.getcwd(), flush=True)
            while True:
                time.sleep(60)
            """
        )
    )
    conf = root / "supervisord.conf"
    conf.write_text(
        textwrap.dedent(
            f"""\
            [supervisord]
            logfile=/var/log/supervisor/supervisord.log
            environment=GREETING="hello, world"

            [program:ticker]
            command={sys.executable} %(here)s/ticker.py %(program_name)s-%(process_num)d
            process_name=%(program_name)s_%(process_num)d
            numprocs=2
            directory=%(here)s
            environment=WORKER=%(process_num)d
            autorestart=true
            startsecs=1
            stopwaitsecs=5
            redirect_stderr=true
            stdout_logfile=%(here)s/logs/ticker.log

            [program:once]
            command={sys.executable} -c "print('done')"
            autorestart=false
            startsecs=0

            [group:all-of-it]
            programs=ticker,once
            """
        )
    )
    result = stoker_cli("import", str(conf), cwd=root)
    assert result.returncode == 0, result.stderr
    stoker.config.write_text(result.stdout)
    stoker.up()
    for instance in (0, 1):
        stoker.wait_state(f"ticker:{instance}", "running")
    stoker.wait_state("once:0", "exited", exit_code=0)
    for instance in (0, 1):
        expected = f"tick ticker-{instance} hello, world {instance} {root}"
        wait_for(
            lambda i=instance, e=expected: e in stoker.cli("logs", f"ticker:{i}").stdout,
            what=f"ticker:{instance}'s line",
        )
        # stdout_logfile kept: one file per instance at the path supervisord used
        assert expected in (root / "logs" / f"ticker.{instance}.log").read_text()
    # [group:all-of-it] programs=ticker,once: the group selects both, as supervisorctl's all-of-it:*
    stopped = stoker.cli("stop", "all-of-it:*")
    assert stopped.returncode == 0, stopped.stderr
    for instance in (0, 1):
        stoker.wait_state(f"ticker:{instance}", "stopped")
    assert stoker.cli("start", "ticker:*").returncode == 0  # a program's own instances
    stoker.wait_state("ticker:1", "running")
    assert stoker.cli("stop", "nothing:*").returncode != 0
    assert stoker.terminate() == 0


# ----------------------------------------------------------------------------------------------
# pm2
# ----------------------------------------------------------------------------------------------

ECOSYSTEM_JSON = """\
{
  "apps": [
    {
      "name": "api",
      "script": "./dist/server.js",
      "args": "--port 3000",
      "node_args": "--max-old-space-size=512",
      "instances": "max",
      "exec_mode": "cluster",
      "env": {"NODE_ENV": "production", "LOG_LEVEL": "info"},
      "env_production": {"NODE_ENV": "production", "API_URL": "https://api.example.com"},
      "max_memory_restart": "300M",
      "kill_timeout": 5000,
      "wait_ready": true,
      "listen_timeout": 10000,
      "out_file": "/var/log/pm2/api.out.log",
      "error_file": "/var/log/pm2/api.err.log",
      "merge_logs": true,
      "log_date_format": "YYYY-MM-DD HH:mm Z"
    },
    {
      "name": "worker",
      "script": "worker.py",
      "cwd": "/srv/shop",
      "watch": ["src", "config"],
      "ignore_watch": ["node_modules", "logs"],
      "autorestart": true,
      "max_restarts": 10,
      "min_uptime": "10s",
      "exp_backoff_restart_delay": 100,
      "cron_restart": "0 3 * * *",
      "env": {"QUEUE": "default", "CONCURRENCY": 4, "DEBUG": false}
    },
    {
      "name": "cleanup",
      "script": "bin/cleanup",
      "interpreter": "none",
      "autorestart": false,
      "restart_delay": 3000,
      "cron_restart": "*/10 * * * * *",
      "vizion": false,
      "user": "deploy"
    },
    {
      "name": "mail queue",
      "script": "artisan",
      "interpreter": "php",
      "args": ["queue:work", "--queue=mail"],
      "instances": 3,
      "stop_exit_codes": [0],
      "time": true
    }
  ],
  "deploy": {
    "production": {"user": "deploy", "host": "shop.example.com", "ref": "origin/main",
                   "post-deploy": "npm ci && pm2 reload ecosystem.config.js --env production"}
  }
}
"""

# The same data as a .js file people write: comments, bare and single-quoted keys, trailing
# commas, a template literal, a const used by name.
ECOSYSTEM_JS = """\
'use strict';
/* pm2 ecosystem of the shop */
const api = {
  name: 'api',
  script: './dist/server.js',
  args: '--port 3000',
  node_args: '--max-old-space-size=512',
  instances: 'max',
  exec_mode: 'cluster',   // one per CPU
  env: { NODE_ENV: 'production', LOG_LEVEL: "info" },
  env_production: { NODE_ENV: 'production', API_URL: `https://api.example.com` },
  max_memory_restart: '300M',
  kill_timeout: 5000,
  wait_ready: true,
  listen_timeout: 10000,
  out_file: '/var/log/pm2/api.out.log',
  error_file: '/var/log/pm2/api.err.log',
  merge_logs: true,
  log_date_format: 'YYYY-MM-DD HH:mm Z',
};

module.exports = {
  apps: [
    api,
    {
      name: "worker",
      script: "worker.py",
      cwd: "/srv/shop",
      watch: ["src", "config"],
      ignore_watch: ["node_modules", 'logs'],
      autorestart: true,
      max_restarts: 10,
      min_uptime: "10s",
      exp_backoff_restart_delay: 100,
      cron_restart: "0 3 * * *",
      env: { QUEUE: "default", CONCURRENCY: 4, DEBUG: false, },
    },
    {
      name: 'cleanup',
      script: 'bin/cleanup',
      interpreter: 'none',
      autorestart: false,
      restart_delay: 3000,
      cron_restart: '*/10 * * * * *', // pm2's cron has a seconds field; so has stoker's
      vizion: false,
      user: 'deploy',
    },
    {
      'name': 'mail queue',
      script: 'artisan',
      interpreter: 'php',
      args: ['queue:work', '--queue=mail'],
      instances: 3,
      stop_exit_codes: [0],
      time: true,
      pmx: undefined,
    },
  ],
  deploy: {
    production: {
      user: 'deploy', host: 'shop.example.com', ref: 'origin/main',
      'post-deploy': 'npm ci && pm2 reload ecosystem.config.js --env production',
    },
  },
};
"""

PM2_KEYS = {
    "script": "command",
    "args": "command",
    "node_args": "command",
    "interpreter": "command",
    "cwd": "directory",
    "instances": "instances",
    "env": "environment",
    "autorestart": "restart",
    "stop_exit_codes": "success_exit_codes",
    "max_restarts": "max_restarts",
    "min_uptime": "start_seconds",
    "kill_timeout": "stop_timeout",
    "exp_backoff_restart_delay": "backoff",
    "restart_delay": "backoff",
    "cron_restart": "cron_restart",
    "max_memory_restart": "max_memory",
    "watch": "watch",
    "ignore_watch": "watch_ignore",
    "time": "log",
    "out_file": "log",
    "error_file": "log",
    "user": "user",
}


def check_pm2_output(text: str, data: dict[str, Any], cpus: int) -> None:
    programs = data["programs"]
    assert list(programs) == ["api", "worker", "mail_queue"]
    api = programs["api"]
    assert api["command"] == "node --max-old-space-size=512 ./dist/server.js --port 3000"
    assert api["instances"] == cpus  # "max": this machine's CPUs, with a note
    assert api["environment"] == {
        "NODE_ENV": "production",
        "LOG_LEVEL": "info",
        "NODE_APP_INSTANCE": "{instance}",
    }
    assert api["stop_timeout"] == "5s"
    assert api["max_restarts"] == 16  # pm2's default
    assert api["log"] == {
        "stderr": "separate",
        "timestamps": True,
        # out_file and error_file; merge_logs put every instance in one file: here each its own
        "file": "/var/log/pm2/api.out-{instance}.log",
        "stderr_file": "/var/log/pm2/api.err-{instance}.log",
    }
    assert api["max_memory"] == "300MB"
    worker = programs["worker"]
    assert worker["command"] == "python3 worker.py"
    assert worker["directory"] == "/srv/shop"
    assert worker["environment"] == {"QUEUE": "default", "CONCURRENCY": "4", "DEBUG": "false"}
    assert worker["restart"] == "always"
    assert worker["start_seconds"] == "10s"
    assert worker["max_restarts"] == 10
    assert worker["backoff"] == {"min": "100ms", "max": "15s"}
    assert worker["cron_restart"] == "0 3 * * *"
    assert worker["watch_ignore"] == ["node_modules", "node_modules/*", "logs", "logs/*"]
    # pm2 watched src and config in the app's cwd, which is not on this machine: stoker check
    # would refuse the paths, so the setting is a comment that says why
    assert "watch" not in worker
    assert '# watch = ["/srv/shop/src", "/srv/shop/config"]' in text.splitlines()
    assert "stoker check says: expected paths that exist" in comments(text)
    # autorestart: false + cron_restart is pm2's cron job: a schedule, not a program that
    # would run once and never again
    assert data["schedules"] == {
        "cleanup": {
            "cron": "*/10 * * * * *",
            "command": "bin/cleanup",
            "user": "deploy",
            "overlap": "replace",
        }
    }
    mail = programs["mail_queue"]
    assert mail["command"] == "php artisan queue:work --queue=mail"
    assert mail["instances"] == 3
    assert mail["restart"] == "on-failure"
    assert mail["success_exit_codes"] == [0]
    said = comments(text)
    assert f"this machine has {cpus} CPU(s), so {cpus}" in said
    assert "cannot share a port unless each binds its own" in said
    assert 'was named "mail queue"' in said
    assert "`pm2 start --env production` added these" in said
    assert "deploy (production): stoker does not deploy code" in said


def check_pm2_comments(text: str, data: dict[str, Any], apps: list[dict[str, Any]]) -> None:
    said = comments(text)
    tables = {**data["programs"], **data.get("schedules", {})}
    for app in apps:
        table = tables[app["name"].replace(" ", "_")]
        for option in app:
            mapped = PM2_KEYS.get(option)
            if option in ("cron_restart", "autorestart") and "cron" in table:  # a schedule
                continue
            if option == "name" or (mapped is not None and (mapped in table or f"# {mapped} = " in text)):
                continue
            assert f"{option} = " in said, f"{app['name']}: {option} is neither a setting nor a comment"


def test_pm2_ecosystem_json(tmp_path: Path) -> None:
    source = tmp_path / "ecosystem.config.json"
    source.write_text(ECOSYSTEM_JSON)
    text, data = import_to_toml(source)
    check_pm2_output(text, data, os.cpu_count() or 1)
    check_pm2_comments(text, data, json.loads(ECOSYSTEM_JSON)["apps"])


def test_pm2_ecosystem_js_reads_like_its_json(tmp_path: Path) -> None:
    (tmp_path / "js").mkdir()
    (tmp_path / "json").mkdir()
    js_file = tmp_path / "js" / "ecosystem.config.js"
    js_file.write_text(ECOSYSTEM_JS)
    json_file = tmp_path / "json" / "ecosystem.config.json"
    json_file.write_text(ECOSYSTEM_JSON)
    text, data = import_to_toml(js_file)
    check_pm2_output(text, data, os.cpu_count() or 1)
    check_pm2_comments(text, data, json.loads(ECOSYSTEM_JSON)["apps"])
    assert data == import_to_toml(json_file)[1]


def test_pm2_cjs_and_export_default(tmp_path: Path) -> None:
    source = tmp_path / "ecosystem.config.cjs"
    source.write_text("module.exports = { apps: [{ script: 'server.js', instances: 2 }] }\n")
    _, data = import_to_toml(source)
    assert data["programs"] == {
        "server": {  # pm2 names an app after its script
            "command": "node server.js",
            "instances": 2,
            "environment": {"NODE_APP_INSTANCE": "{instance}"},
            "max_restarts": 16,
            "log": {"stderr": "separate"},
        }
    }
    source = tmp_path / "ecosystem.config.mjs"
    source.write_text('export default {\n  apps: [{ name: "web", script: "web.sh" }],\n};\n')
    _, data = import_to_toml(source)
    assert data["programs"]["web"]["command"] == "bash web.sh"


# ----------------------------------------------------------------------------------------------
# Procfile
# ----------------------------------------------------------------------------------------------

PROCFILE = """\
# Procfile of the shop (foreman, honcho, Heroku)
web: bundle exec puma -C config/puma.rb -p $PORT
worker: bundle exec sidekiq -q default -q mailers

clock:   bundle exec clockwork clock.rb
release: bundle exec rails db:migrate
assets: npm run watch 2>&1 | tee log/assets.log
"""


def test_procfile(tmp_path: Path) -> None:
    source = tmp_path / "Procfile"
    source.write_text(PROCFILE)
    text, data = import_to_toml(source)
    programs = data["programs"]
    assert programs == {
        "web": {"command": "bundle exec puma -C config/puma.rb -p $PORT", "shell": True},
        "worker": {"command": "bundle exec sidekiq -q default -q mailers"},
        "clock": {"command": "bundle exec clockwork clock.rb"},
        "assets": {"command": "npm run watch 2>&1 | tee log/assets.log", "shell": True},
    }
    said = comments(text)
    assert "$PORT: foreman gave this process PORT=5000" in said
    assert 'environment = { PORT = "5000" }' in said
    assert "release: bundle exec rails db:migrate: Heroku runs this once per deploy" in said
    assert "Procfile of the shop" not in said  # the input's own comments are not carried over


# ----------------------------------------------------------------------------------------------
# Errors: exit 2, the file, where, and what was expected
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "bad.conf",
            "command=foo\n[program:x]\n",
            r"line 1: expected a \[section\] header first, got \"command=foo\"",
        ),
        (
            "bad.conf",
            "[program:x]\ncommand=foo\nthis is not an option\n",
            r'line 3: expected key = value or a \[section\], got "this is not an option"',
        ),
        (
            "bad.conf",
            "[program:x]\ncommand=foo\nnumprocs=two\n",
            r'\[program:x\] numprocs: expected a whole number, got "two"',
        ),
        (
            "bad.conf",
            "[program:x]\ndirectory=/srv\n",
            r"\[program:x\] command: missing; expected the command line to run",
        ),
        (
            "bad.conf",
            "[program:x]\ncommand=foo\nautorestart=sometimes\n",
            r'\[program:x\] autorestart: expected true, false or unexpected, got "sometimes"',
        ),
        (
            "bad.conf",
            "[program:x]\ncommand=foo\nenvironment=A=1,B\n",
            r'\[program:x\] environment: expected KEY=value, got "B"',
        ),
        (
            "bad.conf",
            "[program:x]\ncommand=foo\ndirectory=%(ENV_STOKER_SURELY_UNSET)s\n",
            r"\[program:x\] directory: %\(ENV_STOKER_SURELY_UNSET\)s: the environment variable STOKER_SURELY_UNSET is not set",
        ),
        (
            "bad.conf",
            "[program:x]\ncommand=foo\nstopsignal=LOUD\n",
            r"\[program:x\] stopsignal: expected a signal name like \"TERM\", .* got .LOUD.",
        ),
        (
            "bad.json",
            '{\n "apps": [\n  {"name": "a" "script": "x"}\n ]\n}\n',
            r"line 3: invalid JSON: Expecting ',' delimiter \(column 16\)",
        ),
        (
            "bad.json",
            '{"apps": [{"name": "a", "script": "x.js", "instances": "two"}]}',
            r'apps\[0\] "a" instances: expected a whole number, 1 or more, got "two"',
        ),
        (
            "bad.json",
            '{"apps": [{"name": "a"}]}',
            r"apps\[0\] script: expected the script or program to run, got null",
        ),
        ("bad.json", '{"servers": []}', r"expected a pm2 ecosystem: \{ apps: \[ \{ name, script, … \} \] \}"),
        (
            "ecosystem.config.js",
            "const os = require('os');\nmodule.exports = { apps: [{ script: 'a.js', instances: os.cpus().length }] };\n",
            r"line 1: expected plain data, got require\('os'\) \(JavaScript to run\); replace it with its value, "
            r"or let node print the file as JSON and import that: node -e .*require\(\"\./ecosystem\.config\.js\"\)",
        ),
        (
            "ecosystem.config.js",
            "module.exports = {\n  apps: [{\n    script: 'a.js',\n    env: { HOME: process.env.HOME },\n  }],\n};\n",
            r"line 4: expected plain data, got process\.env\.HOME \(JavaScript to run\)",
        ),
        (
            "ecosystem.config.js",
            "module.exports = {\n  apps: [{ script: `${dir}/a.js` }],\n};\n",
            r"line 2: expected plain text, got a template",
        ),
        (
            "ecosystem.config.js",
            "const apps = [];\n",
            r"expected module\.exports = \{ apps: \[\.\.\.\] \}, found none",
        ),
        (
            "Procfile",
            "web: puma\nthis line is wrong\n",
            r'line 2: expected "NAME: COMMAND", got "this line is wrong"',
        ),
        ("Procfile", "web: puma\nweb: unicorn\n", r'line 2: "web" is already defined on line 1'),
        (
            "notes.txt",
            "hello world\n",
            r"cannot tell its format from its name or contents; .*--format supervisord\|pm2\|procfile",
        ),
    ],
)
def test_bad_input_is_refused_naming_file_and_place(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    source = tmp_path / name
    source.write_text(content)
    result = stoker_cli("import", str(source), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert re.match(f"stoker: {re.escape(str(source))}: {message}", result.stderr), result.stderr
    assert result.stderr.count("\n") == 1


def test_unreadable_files(tmp_path: Path) -> None:
    result = stoker_cli("import", "missing.conf", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (2, f"stoker: {tmp_path / 'missing.conf'}: no such file\n")
    (tmp_path / "binary.conf").write_bytes(b"[program:x]\ncommand=\xff\n")
    result = stoker_cli("import", "binary.conf", cwd=tmp_path)
    assert result.returncode == 2
    assert "binary.conf: not UTF-8 text (bad byte at offset 20)" in result.stderr
    result = stoker_cli("import", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert "is a directory" in result.stderr


def test_format_option_overrides_the_name(tmp_path: Path) -> None:
    source = tmp_path / "processes.txt"
    source.write_text("web: python -m http.server\n")
    _, data = import_to_toml(source, "--format", "procfile")
    assert data["programs"]["web"]["command"] == "python -m http.server"
    source = tmp_path / "apps.cfg"
    source.write_text("[program:web]\ncommand=python -m http.server\n")
    _, data = import_to_toml(source, "--format", "supervisord")
    assert data["programs"]["web"]["restart"] == "on-failure"
    result = stoker_cli("import", str(source), "--format", "cron", cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid choice: 'cron'" in result.stderr


# ----------------------------------------------------------------------------------------------
# Pure pieces
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('KEY="val",KEY2=val2', {"KEY": "val", "KEY2": "val2"}),
        ("A=1, B = two ,C=", {"A": "1", "B": "two", "C": ""}),
        ('DSN="postgres://u:p@db/app?a=1,b=2",X=y', {"DSN": "postgres://u:p@db/app?a=1,b=2", "X": "y"}),
        ("GREETING='hello, world'", {"GREETING": "hello, world"}),
        ('PATH="/usr/bin:/bin",HOME=/home/forge', {"PATH": "/usr/bin:/bin", "HOME": "/home/forge"}),
        ("URL=http://x/?q=a=b", {"URL": "http://x/?q=a=b"}),
        ("A=1,", {"A": "1"}),
        ("", {}),
    ],
)
def test_supervisord_environment_syntax(text: str, expected: dict[str, str]) -> None:
    assert supervisord.parse_environment(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A=1,B", 'expected KEY=value, got "B"'),
        ('A="open', 'the value of A opens a " that never closes'),
        ('A="x" y,B=2', "expected ',' after the quoted value of A"),
        ("=1", "expected a variable name before '=', got \"\""),
        ("1A=x", "expected a variable name before '=', got \"1A\""),
    ],
)
def test_supervisord_environment_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        supervisord.parse_environment(text)
    assert str(info.value) == message


NAMES: dict[str, str | int] = {
    "here": "/etc/supervisor",
    "program_name": "web",
    "group_name": "site",
    "host_node_name": "web-1",
    "numprocs": 4,
    "numprocs_start": 0,
    "ENV_HOME": "/root",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("%(here)s/app.py", "/etc/supervisor/app.py"),
        ("%(program_name)s-%(process_num)d", "web-{instance}"),
        ("--port 80%(process_num)02d", "--port 800{instance}"),  # 4 instances: one digit each
        ("%(group_name)s@%(host_node_name)s", "site@web-1"),
        ("%(ENV_HOME)s/.cache", "/root/.cache"),
        ("%(numprocs)d workers, 100%% sure", "4 workers, 100% sure"),
        ("%(numprocs)03d", "004"),
        ("no expansion, {braces} and a lone % sign", "no expansion, {braces} and a lone % sign"),
    ],
)
def test_supervisord_expansions(text: str, expected: str) -> None:
    assert supervisord.expand(text, NAMES, ValueError) == expected
    assert supervisord.loses_padding(text, NAMES) is None


def test_supervisord_padding_is_lost_only_beyond_one_digit() -> None:
    many = NAMES | {"numprocs": 11}
    assert supervisord.expand("80%(process_num)02d", many, ValueError) == "80{instance}"
    assert supervisord.loses_padding("80%(process_num)02d", many) == "%(process_num)02d"
    assert supervisord.expand("80%(process_num)02d", NAMES | {"numprocs": 10}, ValueError) == "800{instance}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("%(ENV_NOPE)s", "%(ENV_NOPE)s: the environment variable NOPE is not set"),
        ("%(nope)s", "%(nope)s: supervisord expands only group_name, here, host_node_name, numprocs"),
        ("%(here)", "expected %(here)s or %(here)d: a % expansion ends with its type"),
        ("%(here)d", '%(here)d: "/etc/supervisor" cannot be formatted that way'),
    ],
)
def test_supervisord_expansion_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        supervisord.expand(text, NAMES, ValueError)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("autorestart", "restart"),
    [
        ("true", "always"),
        ("false", "never"),
        ("unexpected", "on-failure"),
        (" TRUE ", "always"),
        ("Unexpected", "on-failure"),
    ],
)
def test_autorestart_mapping(autorestart: str, restart: str) -> None:
    assert supervisord.restart_policy(autorestart) == restart


def test_autorestart_mapping_refuses_the_rest() -> None:
    with pytest.raises(ValueError, match='expected true, false or unexpected, got "yes"'):
        supervisord.restart_policy("yes")


def test_exit_codes() -> None:
    assert supervisord.exit_codes("0,2") == [0, 2]
    assert supervisord.exit_codes(" 0 , 3 ") == [0, 3]
    for bad in ("0,x", "256", "-1", ""):
        with pytest.raises(ValueError, match="expected exit codes"):
            supervisord.exit_codes(bad)


@pytest.mark.parametrize(
    ("number", "text"),
    [(0, "0s"), (1, "1s"), (10, "10s"), (90, "1m30s"), (3600, "1h"), (1.5, "1.5s"), (0.1, "100ms")],
)
def test_seconds_are_written_as_durations(number: float, text: str) -> None:
    assert seconds(number) == text


@pytest.mark.parametrize(
    ("pm2", "expected"),
    [(1500, 1.5), (0, 0.0), ("250", 0.25), ("10s", 10.0), ("1m", 60.0), ("1h30m", 5400.0), (100.0, 0.1)],
)
def test_pm2_milliseconds(pm2: object, expected: float) -> None:
    assert duration_from_ms(pm2) == expected


@pytest.mark.parametrize("bad", [True, -1, "soon", None, [1000], float("inf")])
def test_pm2_milliseconds_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="expected a number of milliseconds"):
        duration_from_ms(bad)


def test_program_names() -> None:
    assert program_name("api") == ("api", "")
    assert program_name("my.app-2_x") == ("my.app-2_x", "")
    assert program_name("mail queue")[0] == "mail_queue"
    assert program_name("all")[0] == "all_"
    assert program_name("日本")[0] == "program"


@pytest.mark.parametrize(
    ("file", "text", "fmt"),
    [
        ("/x/supervisord.conf", "", "supervisord"),
        ("/x/app.ini", "", "supervisord"),
        ("/x/ecosystem.config.js", "", "pm2"),
        ("/x/ecosystem.json", "", "pm2"),
        ("/x/Procfile", "", "procfile"),
        ("/x/Procfile.dev", "", "procfile"),
        ("/x/workers", "[program:a]\ncommand=b\n", "supervisord"),
        ("/x/apps", '{"apps": []}', "pm2"),
        ("/x/apps", "module.exports = {apps: []}", "pm2"),
        ("/x/procs", "# comment\nweb: puma\n\nworker: sidekiq\n", "procfile"),
    ],
)
def test_detect_format(file: str, text: str, fmt: str) -> None:
    assert detect_format(file, text) == fmt


def test_procfile_shell_detection() -> None:
    assert not procfile.needs_shell("bundle exec sidekiq -q default")
    assert not procfile.needs_shell("node server.js --port=3000")
    for command in ("puma -p $PORT", "a && b", "a | b", "a > log", "FOO=1 node x.js", "cd web; puma"):
        assert procfile.needs_shell(command), command


# The TOML writer --------------------------------------------------------------------------------

TEXT = st.text(st.characters(blacklist_categories=("Cs",)))


@given(TEXT)
def test_strings_read_back_exactly(text: str) -> None:
    assert tomllib.loads(f"k = {string(text)}")["k"] == text


@given(TEXT, st.one_of(TEXT, st.integers(), st.booleans(), st.lists(TEXT), st.dictionaries(TEXT, TEXT)))
def test_keys_and_values_read_back_exactly(name: str, item: Any) -> None:
    assert tomllib.loads(f"{key(name)} = {value(item)}") == {name: item}


def test_commands_with_quotes_stay_readable() -> None:
    assert string('sh -c "echo \\"hi\\""') == '\'sh -c "echo \\"hi\\""\''
    assert string("it's") == '"it\'s"'


def test_program_names_with_dots_are_quoted() -> None:
    converted = Converted(file="/x/p.conf", format="test", programs=[Program(name="my.app", source="here")])
    converted.programs[0].set("command", "run")
    assert tomllib.loads(render(converted))["programs"] == {"my.app": {"command": "run"}}


def test_long_notes_are_wrapped_and_go_above_their_setting() -> None:
    program = Program(name="p", source="somewhere")
    program.set("command", "run", "short")
    program.settings.append(Setting("restart", "never", "a long explanation " * 10))
    program.note("an option with no equivalent: " + "words " * 40)
    text = render(Converted(file="/x/p.conf", format="test", programs=[program]))
    assert all(len(line) <= 100 for line in text.splitlines())
    lines = text.splitlines()
    assert 'command = "run"  # short' in lines
    restart = lines.index('restart = "never"')
    assert lines[restart - 1].startswith("#   ")  # the end of its note, just above
    assert tomllib.loads(text)["programs"]["p"] == {"command": "run", "restart": "never"}


def test_settings_the_config_refuses_are_commented_with_the_reason(tmp_path: Path) -> None:
    """Some values only the config loader can judge, where the config will live (watch paths
    must exist; an older stoker lacks a key): a refused one is a comment quoting the reason."""
    (tmp_path / "src").mkdir()
    program = Program(name="p", source="somewhere")
    program.set("command", "run")
    program.set("watch", ["src"], "watch: true")
    program.set("max_memory", "300MB", "max_memory_restart")
    here = render(Converted(file=str(tmp_path / "ecosystem.json"), format="test", programs=[program]))
    assert tomllib.loads(here)["programs"]["p"] == {"command": "run", "watch": ["src"], "max_memory": "300MB"}
    elsewhere = render(
        Converted(file=str(tmp_path / "etc" / "ecosystem.json"), format="test", programs=[program])
    )
    lines = elsewhere.splitlines()
    assert '# watch = ["src"]' in lines
    reason = refused("watch", '["src"]', str(tmp_path / "etc"))
    assert reason is not None and reason.startswith("expected paths that exist")
    assert f"watch: true; stoker check says: {reason}" in comments(elsewhere)
    assert tomllib.loads(elsewhere)["programs"]["p"] == {"command": "run", "max_memory": "300MB"}
    # the reason is the loader's message, without the probe's file and table
    assert refused("restart", '"always"', str(tmp_path)) is None
    assert (
        refused("restart", '"sometimes"', str(tmp_path))
        == 'expected one of "always", "on-failure", "never", got "sometimes"'
    )
    unknown = refused("no_such_key", "1", str(tmp_path))
    assert unknown is not None and unknown.startswith('unknown key "no_such_key"')


def test_pm2_watch_true_and_ignore_watch_next_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    source = tmp_path / "ecosystem.config.json"
    source.write_text(
        '{"apps": [{"name": "dev", "script": "app.js", "watch": true, "ignore_watch": ["uploads", "*.log"]},'
        ' {"name": "web", "script": "web.js", "watch": ["src"]}]}'
    )
    _, data = import_to_toml(source)
    assert data["programs"]["dev"]["watch"] == ["."]
    assert data["programs"]["dev"]["watch_ignore"] == ["uploads", "uploads/*", "*.log"]
    assert data["programs"]["web"]["watch"] == ["src"]


# The JavaScript reader -----------------------------------------------------------------------------


def test_js_plain_data() -> None:
    source = """
    // leading comment
    "use strict"
    const port = 3000
    const env = { PORT: port, 'quoted-key': "a\\tb", "x": 'it\\'s', hex: 0x10, neg: -1.5, e: 1e3 }
    module.exports = {
      /* block
         comment */
      apps: [{ name: `tpl`, script: "s.js", env, nothing: null, gone: undefined, list: [1, 2,], },],
    }
    """
    assert js.exported(source) == {
        "apps": [
            {
                "name": "tpl",
                "script": "s.js",
                "env": {"PORT": 3000, "quoted-key": "a\tb", "x": "it's", "hex": 16, "neg": -1.5, "e": 1000.0},
                "nothing": None,
                "list": [1, 2],
            }
        ]
    }


def test_js_strings_with_comment_markers_and_escapes() -> None:
    assert js.exported("module.exports = { a: 'http://x/*y*/', b: \"\\u00e9\\x41\\u{1F600}\" }") == {
        "a": "http://x/*y*/",
        "b": "éA😀",
    }


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        ("module.exports = {\n  a: 1 + 2 }", 2, "expected plain data, got '+'"),
        ("module.exports = {\n  ...base,\n}", 2, "expected a key, got '...' (a spread"),
        ("module.exports = {\n\n  a: os.cpus().length }", 3, "expected plain data, got os.cpus(…)"),
        ("module.exports = { a: 1 } module.exports = 2", 1, "expected ; or a new line, got 'module'"),
        ("module.exports = {\n  a: 1\n  b: 2 }", 3, "expected ',' or '}', got 'b'"),
        ("if (x) { module.exports = {} }", 1, "expected module.exports = {…}, got 'if'"),
        ("module.exports = { a: 'broken \\u12' }", 1, "expected a string with valid escapes"),
        ("module.exports = [1, 2", 1, "expected ',' or ']', got the end of the file"),
    ],
)
def test_js_that_needs_running_is_refused_at_its_line(source: str, line: int, message: str) -> None:
    with pytest.raises(js.JSError) as info:
        js.exported(source)
    assert info.value.line == line
    assert str(info.value).startswith(message)


def test_convert_is_pure_and_uses_the_machine_given() -> None:
    """%(ENV_X)s, %(host_node_name)s and "max" come from the Machine passed in."""
    conf = "[program:w]\ncommand=run --host %(host_node_name)s\ndirectory=%(ENV_APP_ROOT)s\n"
    data = tomllib.loads(convert(conf, "/etc/supervisor/conf.d/w.conf", machine=MACHINE))
    assert data["programs"]["w"]["command"] == "run --host web-1"
    assert data["programs"]["w"]["directory"] == "/srv/app"
    pm2 = '{"apps": [{"name": "api", "script": "api.js", "instances": "max"}]}'
    data = tomllib.loads(convert(pm2, "/srv/app/ecosystem.json", machine=MACHINE))
    assert data["programs"]["api"]["instances"] == 4
    pm2 = '{"apps": [{"name": "api", "script": "api.js", "instances": -1}]}'
    data = tomllib.loads(convert(pm2, "/srv/app/ecosystem.json", machine=MACHINE))
    assert data["programs"]["api"]["instances"] == 3
    with pytest.raises(InputError, match=r"/x/a.conf: \[program:w\] user: %\(ENV_NOPE\)s"):
        convert("[program:w]\ncommand=run\nuser=%(ENV_NOPE)s\n", "/x/a.conf", machine=MACHINE)


# ----------------------------------------------------------------------------------------------
# Import fidelity (issue 25): the shapes real ecosystem files and supervisor trees have
# ----------------------------------------------------------------------------------------------

# A Next.js/Express shop's ecosystem.config.js, as people write them: __dirname everywhere,
# a script that is a command line, pm2's aliases, the cron job idiom.
ECOSYSTEM_DIRNAME = """\
const path = require('path');

module.exports = {
  apps: [
    {
      name: 'web',
      cwd: __dirname,
      script: 'npm run start',
      env: { NODE_ENV: 'production', PORT: 3000 },
      watch: true,
      log_date_format: false,
      instance_var: 'INSTANCE_ID',
      err_file: path.join(__dirname, 'logs', 'web.err.log'),
      out: `${__dirname}/logs/web.out.log`,
    },
    {
      name: 'api',
      script: './server.js',
      instances: 4,
      port: 8080,
    },
    {
      name: 'report',
      script: path.resolve(__dirname, 'bin/report.js'),
      autorestart: false,
      cron: '0 6 * * *',
      out_file: 'logs/report.log',
    },
    {
      name: 'queue',
      script: 'php artisan queue:work >> storage/logs/queue.log 2>&1',
      time: false,
    },
  ],
};
"""


def test_pm2_ecosystem_with_dirname(tmp_path: Path) -> None:
    source = tmp_path / "ecosystem.config.js"
    source.write_text(ECOSYSTEM_DIRNAME)
    text, data = import_to_toml(source)
    here = str(tmp_path)
    web = data["programs"]["web"]
    assert web["directory"] == here  # cwd: __dirname
    assert web["command"] == "npm run start"  # split into words, not one quoted word
    assert "shell" not in web
    assert web["environment"] == {"NODE_ENV": "production", "PORT": "3000", "INSTANCE_ID": "{instance}"}
    assert web["watch"] == [here]
    assert web["watch_ignore"] == [".*", "*/.*", "node_modules", "node_modules/*", "*/node_modules/*"]
    # log_date_format: false is no timestamps; err_file and out are pm2's aliases
    assert web["log"] == {
        "stderr": "separate",
        "file": f"{here}/logs/web.out.log",
        "stderr_file": f"{here}/logs/web.err.log",
    }
    api = data["programs"]["api"]
    assert api["command"] == "node ./server.js"
    assert api["environment"]["PORT"] == "8080"  # pm2's port option
    assert data["schedules"]["report"] == {
        "cron": "0 6 * * *",
        "command": f"node {here}/bin/report.js",
        "overlap": "replace",
    }
    queue = data["programs"]["queue"]
    assert queue["command"] == "php artisan queue:work >> storage/logs/queue.log 2>&1"
    assert queue["shell"] is True
    assert queue["log"] == {"stderr": "separate", "timestamps": False}  # time: false, said plainly
    said = comments(text)
    assert 'instance_var = "INSTANCE_ID": pm2 gave each instance its number in INSTANCE_ID' in said
    assert "log_date_format = false: no timestamps, as in pm2" in said
    assert "instances = 4 without exec_mode: pm2 ran this node app in cluster mode" in said
    assert "pm2 ran it with bash -c; here with /bin/sh -c" in said
    assert "`stoker schedule run report` runs it now" in said
    assert "its output went to logs/report.log; here each run's output is kept with its job" in said


def test_pm2_json5_and_yaml(tmp_path: Path) -> None:
    source = tmp_path / "ecosystem.json"
    source.write_text(
        "// pm2 reads .json with json5\n{\n  apps: [{ name: 'web', script: 'web.js', /* fork */ "
        "exec_mode: 'fork', instances: 2, },],\n}\n"
    )
    _, data = import_to_toml(source)
    assert data["programs"]["web"]["command"] == "node web.js"
    assert data["programs"]["web"]["instances"] == 2
    source = tmp_path / "ecosystem.config.yml"
    source.write_text(
        "apps:\n  - name: worker\n    script: worker.py\n    error: /var/log/w.err\n    env:\n      QUEUE: mail\n"
    )
    _, data = import_to_toml(source)
    assert data["programs"]["worker"]["command"] == "python3 worker.py"
    assert data["programs"]["worker"]["environment"] == {"QUEUE": "mail"}
    assert data["programs"]["worker"]["log"] == {"stderr": "separate", "stderr_file": "/var/log/w.err"}
    source.write_text("apps:\n  - name: [worker\n    script: x\n")
    result = stoker_cli("import", str(source), cwd=tmp_path)
    assert result.returncode == 2
    assert f"{source}: line 3: invalid YAML: expected" in result.stderr


@pytest.mark.parametrize(
    "text",
    [
        "[group:web]\nprograms=api,worker\n",
        "[fcgi-program:php]\nsocket=unix:///run/php.sock\ncommand=php-cgi\n",
        "; only listeners here\n[eventlistener:crashmail]\ncommand=crashmail\n",
    ],
)
def test_a_file_of_only_other_supervisord_sections_is_supervisord(text: str) -> None:
    assert detect_format("/etc/supervisor/conf.d/web", text) == "supervisord"


def test_supervisord_one_file_for_both_streams_stays_one(tmp_path: Path) -> None:
    conf = tmp_path / "app.conf"
    conf.write_text(
        "[program:app]\ncommand=run\nstdout_logfile=/var/log/app.log\nstderr_logfile=/var/log/app.log\n"
    )
    _, data = import_to_toml(conf)
    assert data["programs"]["app"]["log"] == {"stderr": "merge", "file": "/var/log/app.log"}


def test_js_dirname_and_path() -> None:
    source = """
    const path = require("node:path")
    module.exports = {
      a: __dirname, b: __filename, c: path.join(__dirname, "..", "x", "./y/"),
      d: path.resolve("logs"), e: path.resolve(__dirname, "/abs", "z"), f: `${__dirname}/tpl`,
      g: require('path').join('rel', 'p'),
    }
    """
    assert js.exported(source, "/srv/app/ecosystem.config.js") == {
        "a": "/srv/app",
        "b": "/srv/app/ecosystem.config.js",
        "c": "/srv/x/y",
        "d": "/srv/app/logs",
        "e": "/abs/z",
        "f": "/srv/app/tpl",
        "g": "rel/p",
    }
    with pytest.raises(js.JSError, match=r"expected plain data, got path.relative"):
        js.exported("const path = require('path')\nmodule.exports = path.relative('a', 'b')", "/x/e.js")
    with pytest.raises(js.JSError, match=r"expected strings in path.join"):
        js.exported("const path = require('path')\nmodule.exports = path.join('a', 1)", "/x/e.js")


def test_js_json5_data() -> None:
    assert js.data("// c\n{a: 'x', \"b\": [1, 2,], c: +1, d: .5, e: Infinity,}") == {
        "a": "x",
        "b": [1, 2],
        "c": 1,
        "d": 0.5,
        "e": float("inf"),
    }
    with pytest.raises(js.JSError, match="expected the end of the file, got '}'"):
        js.data("{a: 1}}")


# Laravel's documented queue worker (laravel.com/docs/queues#supervisor-configuration)
LARAVEL_WORKER = """\
[program:laravel-worker]
process_name=%(program_name)s_%(process_num)02d
command=php /home/forge/app.com/artisan queue:work sqs --sleep=3 --tries=3 --max-time=3600
autostart=true
autorestart=true
stopasgroup=true
killasgroup=true
user=forge
numprocs=8
redirect_stderr=true
stdout_logfile=/home/forge/app.com/worker.log
stopwaitsecs=3600
"""

# celery's extra/supervisord/celeryd.conf and celerybeat.conf, as shipped
CELERY = """\
; ==================================
;  celery worker supervisor example
; ==================================

[program:celery]
; Set full path to celery program if using virtualenv
command=celery -A proj worker --loglevel=INFO
; Alternatively,
;command=celery --app=your_app.celery:app worker --loglevel=INFO -n worker.%%h
directory=/path/to/project
user=nobody
numprocs=1
stdout_logfile=/var/log/celery/worker.log
stderr_logfile=/var/log/celery/worker.log
autostart=true
autorestart=true
startsecs=10

; Need to wait for currently executing tasks to finish at shutdown.
; Increase this if you have very long running tasks.
stopwaitsecs = 600

; Causes supervisor to send the termination signal (SIGTERM) to the whole process group.
stopasgroup=true

; Set Celery priority higher than default (999)
; so, if rabbitmq is supervised, it will start first.
priority=1000

[program:celerybeat]
command=celery -A proj beat --schedule /var/lib/celery/beat.db --loglevel=INFO
directory=/path/to/project
user=nobody
numprocs=1
stdout_logfile=/var/log/celery/beat.log
stderr_logfile=/var/log/celery/beat.log
autostart=true
autorestart=true
startsecs=10
stopasgroup=true
priority=999
"""

# zulip's shape: groups of workers, a proxy read from supervisord's environment
ZULIP = """\
[program:zulip-django]
command=nice -n5 /home/zulip/deployments/current/manage.py runfastcgi
environment=HTTP_proxy="%(ENV_HTTP_proxy)s",HTTPS_proxy="%(ENV_HTTPS_proxy)s",PYTHONDONTWRITEBYTECODE=1
priority=100
autostart=true
autorestart=true
stopsignal=TERM
stopwaitsecs=30
user=zulip
redirect_stderr=true
stdout_logfile=/var/log/zulip/django.log
stdout_logfile_maxbytes=1GB
stdout_logfile_backups=3
directory=/home/zulip/deployments/current/

[program:zulip_deliver_scheduled_emails]
command=/home/zulip/deployments/current/manage.py deliver_scheduled_emails --url %(ENV_ZULIP_URL)s
user=zulip
stdout_logfile=/var/log/zulip/deliver_scheduled_emails.log
stderr_logfile=/var/log/zulip/deliver_scheduled_emails.log
directory=/home/zulip/deployments/current/

[group:zulip-workers]
programs=zulip_deliver_scheduled_emails
"""

SUPERVISOR_MAIN = """\
; /etc/supervisor/supervisord.conf as Debian ships it
[unix_http_server]
file=/var/run/supervisor.sock
chmod=0700

[supervisord]
logfile=/var/log/supervisor/supervisord.log
pidfile=/var/run/supervisord.pid
childlogdir=/var/log/supervisor

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix:///var/run/supervisor.sock

[include]
files = conf.d/*.conf extra/*.ini
"""


def test_supervisord_include_reads_the_whole_tree(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "main.conf").write_text(SUPERVISOR_MAIN)
    (tmp_path / "conf.d" / "laravel-worker.conf").write_text(LARAVEL_WORKER)
    (tmp_path / "conf.d" / "celery.conf").write_text(CELERY)
    (tmp_path / "conf.d" / "zulip.conf").write_text(ZULIP)
    (tmp_path / "conf.d" / "ignored.conf.disabled").write_text("[program:no]\ncommand=no\n")
    env = {"HTTP_proxy": "http://proxy:3128", "HTTPS_proxy": "http://proxy:3128", "ZULIP_URL": "https://chat"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        text, data = import_to_toml(tmp_path / "main.conf")
    programs = data["programs"]
    # priority order, then file order within a priority; celery.conf, laravel-worker.conf and
    # zulip.conf sorted as supervisord globs them
    assert list(programs) == [
        "zulip-django",
        "celerybeat",
        "laravel-worker",
        "zulip_deliver_scheduled_emails",
        "celery",
    ]
    worker = programs["laravel-worker"]
    assert worker["instances"] == 8
    assert worker["user"] == "forge"
    assert worker["stop_timeout"] == "1h"
    assert (
        worker["command"]
        == "php /home/forge/app.com/artisan queue:work sqs --sleep=3 --tries=3 --max-time=3600"
    )
    celery = programs["celery"]
    # one file for both streams stays one
    assert celery["log"] == {"stderr": "merge", "file": "/var/log/celery/worker.log"}
    assert celery["start_seconds"] == "10s"
    assert celery["directory"] == "/path/to/project"
    django = programs["zulip-django"]
    # HTTP_proxy=%(ENV_HTTP_proxy)s: the daemon's own variable, inherited: not baked in
    assert django["environment"] == {"PYTHONDONTWRITEBYTECODE": "1"}
    assert django["log"] == {
        "stderr": "merge",
        "max_size": "1GB",
        "keep": 3,
        "file": "/var/log/zulip/django.log",
    }
    deliver = programs["zulip_deliver_scheduled_emails"]
    assert deliver["command"] == (
        "/home/zulip/deployments/current/manage.py deliver_scheduled_emails --url ${ZULIP_URL}"
    )
    assert deliver["shell"] is True
    said = comments(text)
    assert (
        "[include] conf.d/*.conf: read conf.d/celery.conf, conf.d/laravel-worker.conf, conf.d/zulip.conf."
        in said
    )
    assert "[include] extra/*.ini: matched no file here." in said
    assert "from [program:celery] in conf.d/celery.conf" in said
    assert "HTTP_proxy=%(ENV_HTTP_proxy)s, HTTPS_proxy=%(ENV_HTTPS_proxy)s: left out" in said
    assert "http://proxy" not in text and "https://chat" not in text


def test_supervisord_include_errors_name_the_included_file(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "main.conf").write_text("[include]\nfiles=conf.d/*.conf\n")
    (tmp_path / "conf.d" / "bad.conf").write_text("[program:x]\ncommand=run\nnumprocs=many\n")
    result = stoker_cli("import", "main.conf", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        f'stoker: {tmp_path}/conf.d/bad.conf: [program:x] numprocs: expected a whole number, got "many"\n'
    )
    (tmp_path / "main.conf").write_text("[include]\nfiles=\n")
    result = stoker_cli("import", "main.conf", cwd=tmp_path)
    assert "[include] files: expected one or more file patterns" in result.stderr


def test_supervisord_include_tree_imported_and_run(stoker: Stoker, monkeypatch: pytest.MonkeyPatch) -> None:
    """%(here)s of an included file is its own folder; %(ENV_X)s in a command is read from
    the daemon's environment when the program starts, not from the importing shell's."""
    root = stoker.root
    (root / "conf.d").mkdir()
    (root / "conf.d" / "say.py").write_text(
        "import os, sys, time\nprint('said', sys.argv[1], os.environ['MOOD'], flush=True)\ntime.sleep(600)\n"
    )
    (root / "supervisord.conf").write_text("[supervisord]\n\n[include]\nfiles = conf.d/*.conf\n")
    (root / "conf.d" / "say.conf").write_text(
        f"[program:say]\ncommand={sys.executable} %(here)s/say.py %(ENV_STOKER_TEST_WORD)s\n"
        "environment=MOOD=%(ENV_MOOD)s\nautorestart=true\n"
    )
    monkeypatch.setenv("STOKER_TEST_WORD", "at-import")
    monkeypatch.setenv("MOOD", "grumpy")
    result = stoker_cli("import", str(root / "supervisord.conf"), cwd=root)
    assert result.returncode == 0, result.stderr
    assert "at-import" not in result.stdout and "grumpy" not in result.stdout
    stoker.config.write_text(result.stdout)
    monkeypatch.setenv("STOKER_TEST_WORD", "at-start")
    monkeypatch.setenv("MOOD", "cheerful")
    stoker.up()
    stoker.wait_state("say:0", "running")
    wait_for(lambda: "said at-start cheerful" in stoker.cli("logs", "say").stdout, what="say's line")
    assert stoker.terminate() == 0


def test_pm2_ecosystem_with_dirname_imported_and_run(stoker: Stoker) -> None:
    """cwd: __dirname and a script that is a command line run as pm2 ran them."""
    root = stoker.root
    (root / "app").mkdir()
    (root / "app" / "tick.py").write_text(
        "import os, sys, time\nprint('tick', sys.argv[1:], os.getcwd(), os.environ['INSTANCE_ID'], flush=True)\n"
        "time.sleep(600)\n"
    )
    source = root / "app" / "ecosystem.config.js"
    source.write_text(
        "const path = require('path');\nmodule.exports = { apps: [\n"
        f"  {{ name: 'web', cwd: __dirname, script: '{sys.executable} tick.py --name \"a b\"', instance_var: 'INSTANCE_ID' }},\n"
        f"  {{ name: 'shell', cwd: path.join(__dirname, '..'), script: 'echo $((6 * 7)) > answer.txt', autorestart: false }},\n"
        "] };\n"
    )
    result = stoker_cli("import", str(source), cwd=root)
    assert result.returncode == 0, result.stderr
    stoker.config.write_text(result.stdout)
    stoker.up()
    stoker.wait_state("web:0", "running")
    wait_for(
        lambda: f"tick ['--name', 'a b'] {root / 'app'} 0" in stoker.cli("logs", "web").stdout,
        what="web's line",
    )
    stoker.wait_state("shell:0", "exited", exit_code=0)
    assert (root / "answer.txt").read_text() == "42\n"
    assert stoker.terminate() == 0


def test_pm2_env_option_merges_the_named_environment(tmp_path: Path) -> None:
    source = tmp_path / "ecosystem.config.json"
    source.write_text(ECOSYSTEM_JSON)
    text, data = import_to_toml(source, "--env", "production")
    assert data["programs"]["api"]["environment"] == {
        "NODE_ENV": "production",
        "LOG_LEVEL": "info",
        "API_URL": "https://api.example.com",
        "NODE_APP_INSTANCE": "{instance}",
    }
    assert data["programs"]["worker"]["environment"] == {
        "QUEUE": "default",
        "CONCURRENCY": "4",
        "DEBUG": "false",
    }
    said = comments(text)
    assert "--env production: each app's env_production is merged into its env" in said
    assert "`pm2 start --env production` added these" not in said
    result = stoker_cli("import", str(source), "--env", "staging", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (
        2,
        f"stoker: {source}: --env staging: no app has env_staging (found: env_production)\n",
    )
    conf = tmp_path / "app.conf"
    conf.write_text("[program:a]\ncommand=run\n")
    result = stoker_cli("import", str(conf), "--env", "production", cwd=tmp_path)
    assert result.returncode == 2
    assert "--env production: only a pm2 ecosystem file has environments" in result.stderr


def test_supervisord_container_idiom(tmp_path: Path) -> None:
    """A Docker image's supervisord.conf: output to the container's stdout/stderr, a program
    whose output is not kept, and a listener that ends supervisord when a program dies."""
    conf = tmp_path / "supervisord.conf"
    conf.write_text(
        "[supervisord]\nnodaemon=true\n\n"
        "[program:php-fpm]\ncommand=php-fpm -F\nstdout_logfile=/dev/stdout\nstdout_logfile_maxbytes=0\n"
        "stderr_logfile=/dev/stderr\nstderr_logfile_maxbytes=0\n\n"
        "[program:nginx]\ncommand=nginx -g 'daemon off;'\nredirect_stderr=true\nstdout_logfile=/dev/stdout\n"
        "stdout_logfile_maxbytes=0\n\n"
        "[program:cron]\ncommand=cron -f\nstdout_logfile=NONE\nstderr_logfile=AUTO\n\n"
        "[eventlistener:quit_on_failure]\ncommand=/usr/local/bin/stop-supervisor.sh\n"
        "events=PROCESS_STATE_EXITED,PROCESS_STATE_FATAL\n"
    )
    text, data = import_to_toml(conf)
    programs = data["programs"]
    assert programs["php-fpm"]["log"] == {
        "stderr": "separate",
        "file": "/dev/stdout",
        "stderr_file": "/dev/stderr",
    }
    assert programs["nginx"]["log"] == {"stderr": "merge", "file": "/dev/stdout"}
    assert programs["cron"]["log"] == {"stderr": "separate", "file": "/dev/null"}  # AUTO: stoker's place
    said = comments(text)
    assert "stdout_logfile_maxbytes=0" not in said  # a stream is not rotated: nothing to say
    assert "set stop_daemon_on_exit = true on that program instead" in said
