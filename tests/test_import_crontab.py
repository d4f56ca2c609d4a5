"""`stoker import` of crontabs: user (`crontab -l`) and system (/etc/crontab, /etc/cron.d) files.

Real crontab shapes go through the real CLI; each output is read back with tomllib and must
pass `stoker check` run as a process. Every imported schedule must fire when cron would: its
next fire times are compared with those of the original expression, read by stoker's own
trigger module (and, once, by `stoker cron`), and with an independent brute-force reading of
the five fields written here (croniter is no dependency of stoker's, and this needs none).
The pure parts (cron's %, the shell word scanner, names, errors) are tested on their own.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import Stoker, wait_for
from hypothesis import given
from hypothesis import strategies as st

from stoker.config import parse_config
from stoker.importing import InputError, convert, cronline, detect_format
from stoker.importing import crontab as ct
from stoker.importing.shellwords import ShellSyntaxError, needs_shell, scan
from stoker.schedule.triggers import fire_times, parse_cron, system_zone, zone_named

DOCS = Path(__file__).resolve().parent.parent / "docs"


def stoker_cli(*args: str, cwd: Path, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stoker", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        input=input,
    )


def import_crontab(
    folder: Path, text: str, name: str = "crontab.txt", *extra: str
) -> tuple[str, dict[str, Any]]:
    """`stoker import FILE` of `text` saved as folder/name → (the output, tomllib's reading);
    the output must pass `stoker check` (a separate process) saved as folder/stoker.toml."""
    source = folder / name
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(text)
    result = stoker_cli("import", *extra, str(source), cwd=folder)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    target = folder / "stoker.toml"
    target.write_text(result.stdout)
    checked = stoker_cli("-c", str(target), "check", cwd=folder)
    assert checked.returncode == 0, checked.stderr + "\n" + result.stdout
    return result.stdout, tomllib.loads(result.stdout)


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
# An independent reading of cron's five fields, for the fire-time comparison
# ----------------------------------------------------------------------------------------------

_MONTHS = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1
    )
}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def _field(text: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    def number(word: str) -> int:
        return names[word] if word in names else int(word)

    values: set[int] = set()
    for part in text.lower().split(","):
        span, _, step = part.partition("/")
        if span == "*":
            first, last = low, high
        elif "-" in span:
            a, b = span.split("-")
            first, last = number(a), number(b)
        else:
            first = number(span)
            last = high if step else first
        values.update(range(first, last + 1, int(step or 1)))
    return values


def brute_force(expression: str, zone: dt.tzinfo, start: dt.date, end: dt.date) -> Iterator[dt.datetime]:
    """Every local time the expression names between two dates, day by day (Vixie cron's
    rules: the day of month and the weekday are ORed when both are restricted)."""
    fields = _MACROS.get(expression, expression).split()
    minutes = sorted(_field(fields[0], 0, 59, {}))
    hours = sorted(_field(fields[1], 0, 23, {}))
    doms = _field(fields[2], 1, 31, {})
    months = _field(fields[3], 1, 12, _MONTHS)
    dows = {d % 7 for d in _field(fields[4], 0, 7, _DAYS)}
    either = not fields[2].startswith("*") and not fields[4].startswith("*")
    day = start
    while day < end:
        dom_ok, dow_ok = day.day in doms, (day.weekday() + 1) % 7 in dows
        if day.month in months and ((dom_ok or dow_ok) if either else (dom_ok and dow_ok)):
            for hour in hours:
                for minute in minutes:
                    yield dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
        day += dt.timedelta(days=1)


def _shifts(zone: dt.tzinfo, when: dt.datetime) -> bool:
    """Whether the zone's offset changes on that local day (DST: cron has its own rules there,
    which the brute force does not try to follow)."""
    midnight = dt.datetime(when.year, when.month, when.day, tzinfo=zone)
    return midnight.utcoffset() != (midnight + dt.timedelta(hours=23, minutes=59)).utcoffset()


FROM, UNTIL, COUNT = dt.date(2026, 1, 1), dt.date(2032, 1, 1), 400


def assert_fires_like_cron(schedule: Any, original: str, zone_name: str | None) -> None:
    """The imported schedule's next COUNT fire times are the original expression's: read by
    stoker's trigger module, and by the brute force (outside DST-shift days)."""
    zone = zone_named(zone_name)
    after = dt.datetime(FROM.year, FROM.month, FROM.day, tzinfo=zone).timestamp() - 1
    until = dt.datetime(UNTIL.year, UNTIL.month, UNTIL.day, tzinfo=zone).timestamp() - 1
    imported = fire_times(schedule.trigger(), after, COUNT, until)
    expected = fire_times(parse_cron(original, zone), after, COUNT, until)
    assert imported == expected
    assert imported, f"{original} never fires in {FROM}..{UNTIL}"
    got = [dt.datetime.fromtimestamp(t, zone) for t in imported]
    independent = []
    for when in brute_force(original, zone, FROM, UNTIL):
        if when.timestamp() > got[-1].timestamp():
            break
        independent.append(when)
    assert [t for t in got if not _shifts(zone, t)] == [t for t in independent if not _shifts(zone, t)]


def check_schedules(folder: Path, text: str, expected: dict[str, tuple[str, str | None]]) -> None:
    """The output's schedules are `expected` (name → the crontab's time fields, CRON_TZ), and
    each fires as cron would."""
    config = parse_config(text, str(folder / "stoker.toml"))
    assert sorted(config.schedules) == sorted(expected)
    asked = False
    for name, (original, zone) in expected.items():
        schedule = config.schedules[name]
        assert schedule.timezone == (zone if zone is not None else config.daemon.timezone)
        if original == "@reboot":
            assert schedule.cron == "@reboot"
            continue
        assert_fires_like_cron(schedule, original, schedule.timezone)
        if not asked:  # and `stoker cron` on the original says the same (once a file: a process)
            assert_stoker_cron_agrees(folder, schedule, original)
            asked = True


def assert_stoker_cron_agrees(folder: Path, schedule: Any, original: str) -> None:
    zone = zone_named(schedule.timezone)
    after = dt.datetime(FROM.year, FROM.month, FROM.day, tzinfo=zone)
    tz = ["--tz", schedule.timezone] if schedule.timezone else []
    said = stoker_cli("cron", original, *tz, "--after", after.isoformat(), "-n", "20", "--json", cwd=folder)
    assert said.returncode == 0, said.stderr
    times = fire_times(schedule.trigger(), after.timestamp(), 20)
    assert json.loads(said.stdout) == [dt.datetime.fromtimestamp(t, zone).isoformat() for t in times]


# ----------------------------------------------------------------------------------------------
# Real crontabs through the CLI
# ----------------------------------------------------------------------------------------------

LARAVEL = "* * * * * cd /var/www/app && php artisan schedule:run >> /dev/null 2>&1\n"


def test_laravel_scheduler_line(tmp_path: Path) -> None:
    text, data = import_crontab(tmp_path, LARAVEL)
    assert data["schedules"] == {
        "artisan-schedule-run": {
            "cron": "* * * * *",
            "command": "php artisan schedule:run",
            "directory": "/var/www/app",
            "overlap": "allow",
        }
    }
    said = comments(text)
    assert "cron's `>> /dev/null 2>&1` is left out: stoker keeps each run's output with its job" in said
    assert "from line 1: * * * * * cd /var/www/app && php artisan schedule:run >> /dev/null 2>&1" in said
    check_schedules(tmp_path, text, {"artisan-schedule-run": ("* * * * *", None)})


USER_CRONTAB = """\
# Edit this file to introduce tasks to be run by cron.
#
# m h  dom mon dow   command
MAILTO=ops@example.com
PATH=/usr/local/bin:/usr/bin:/bin
APP_ENV = "production"

*/5 * * * * /usr/bin/php /home/shop/cron/cleanup.php --days=7 2>/dev/null
30 2 * * * /home/shop/bin/backup.sh > /dev/null 2>&1
0 22 * * 1-5 php /home/shop/cron/daily_report.php >> /var/log/shop/report.log 2>&1
MAILTO=""
15 14 1 * * php /home/shop/cron/invoices.php &> /tmp/invoices.log
0 0,12 1 */2 * php /home/shop/cron/archive.php
"""


def test_user_crontab_with_variables_and_redirections(tmp_path: Path) -> None:
    text, data = import_crontab(tmp_path, USER_CRONTAB)
    schedules = data["schedules"]
    assert list(schedules) == ["cleanup", "backup", "daily_report", "invoices", "archive"]
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "APP_ENV": "production"}
    assert all(s["environment"] == env for s in schedules.values())
    assert all("user" not in s for s in schedules.values())  # a user crontab has no user column
    assert schedules["cleanup"]["command"] == "/usr/bin/php /home/shop/cron/cleanup.php --days=7"
    assert schedules["backup"]["command"] == "/home/shop/bin/backup.sh"
    assert schedules["daily_report"]["command"] == "php /home/shop/cron/daily_report.php"
    assert schedules["invoices"]["command"] == "php /home/shop/cron/invoices.php"
    said = comments(text)
    for redirection in (
        "2>/dev/null",
        "> /dev/null 2>&1",
        ">> /var/log/shop/report.log 2>&1",
        "&> /tmp/invoices.log",
    ):
        assert f"cron's `{redirection}` is left out" in said
    assert "line 4, MAILTO=ops@example.com: cron mailed each run's output there" in said
    assert 'line 11, MAILTO="": cron mailed nothing' in said
    assert '[notify.NAME] webhook with events = ["job_failed"]' in said
    assert "A user's crontab ran as its owner" in said
    check_schedules(
        tmp_path,
        text,
        {
            "cleanup": ("*/5 * * * *", None),
            "backup": ("30 2 * * *", None),
            "daily_report": ("0 22 * * 1-5", None),
            "invoices": ("15 14 1 * *", None),
            "archive": ("0 0,12 1 */2 *", None),
        },
    )


DEBIAN_ETC_CRONTAB = """\
# /etc/crontab: system-wide crontab
# Unlike any other crontab you don't have to run the `crontab'
# command to install the new version when you edit this file
# and files in /etc/cron.d. These files also have username fields,
# that none of the other crontabs do.

SHELL=/bin/sh
PATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin

# Example of job definition:
# .---------------- minute (0 - 59)
# |  .------------- hour (0 - 23)
# |  |  .---------- day of month (1 - 31)
# |  |  |  .------- month (1 - 12) OR jan,feb,mar,apr ...
# |  |  |  |  .---- day of week (0 - 6) (Sunday=0 or 7) OR sun,mon,tue,wed,thu,fri,sat
# |  |  |  |  |
# *  *  *  *  * user-name command to be executed
17 *	* * *	root	cd / && run-parts --report /etc/cron.hourly
25 6	* * *	root	test -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; }
47 6	* * 7	root	test -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.weekly; }
52 6	1 * *	root	test -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.monthly; }
#
"""


def test_debian_etc_crontab_has_a_user_column(tmp_path: Path) -> None:
    text, data = import_crontab(tmp_path, DEBIAN_ETC_CRONTAB, "etc-crontab")
    assert (
        text.startswith("# Converted by `stoker import` from ") and "(system crontab)" in text.splitlines()[0]
    )
    schedules = data["schedules"]
    assert list(schedules) == ["run-parts-cron-hourly", "test-anacron", "test-anacron-2", "test-anacron-3"]
    assert all(s["user"] == "root" for s in schedules.values())
    hourly = schedules["run-parts-cron-hourly"]
    assert hourly["directory"] == "/" and hourly["command"] == "run-parts --report /etc/cron.hourly"
    daily = schedules["test-anacron"]
    assert daily["command"] == [
        "/bin/sh",
        "-c",
        "test -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; }",
    ]
    assert daily["environment"]["SHELL"] == "/bin/sh"
    assert "through /bin/sh -c, as cron ran it: it uses `&&`, `;`, `||`" in comments(text)
    check_schedules(
        tmp_path,
        text,
        {
            "run-parts-cron-hourly": ("17 * * * *", None),
            "test-anacron": ("25 6 * * *", None),
            "test-anacron-2": ("47 6 * * 7", None),
            "test-anacron-3": ("52 6 1 * *", None),
        },
    )


CRON_D_PHP = """\
# /etc/cron.d/php@PHP_VERSION@: crontab fragment for PHP
#  This purges session files in session.save_path older than X,
#  where X is defined in seconds as the largest value of
#  session.gc_maxlifetime from all your SAPI php.ini files
#  or 24 minutes if not defined.  The script triggers only
#  when session.save_handler=files.

09,39 *     * * *     root   [ -x /usr/lib/php/sessionclean ] && if [ ! -d /run/systemd/system ]; then /usr/lib/php/sessionclean; fi
*/5  *  *  *  * www-data php -f /var/www/nextcloud/cron.php
"""


def test_cron_d_file_by_its_folder(tmp_path: Path) -> None:
    text, data = import_crontab(tmp_path, CRON_D_PHP, "cron.d/php")
    schedules = data["schedules"]
    assert list(schedules) == ["sessionclean", "cron"]
    clean = schedules["sessionclean"]
    assert clean["user"] == "root" and clean["command"][:2] == ["/bin/sh", "-c"]
    assert clean["command"][2].startswith("[ -x /usr/lib/php/sessionclean ] && if")
    assert schedules["cron"] == {
        "cron": "*/5 * * * *",
        "command": "php -f /var/www/nextcloud/cron.php",
        "user": "www-data",
        "overlap": "allow",
    }
    check_schedules(tmp_path, text, {"sessionclean": ("09,39 * * * *", None), "cron": ("*/5 * * * *", None)})


MACROS = """\
@hourly  php /srv/app/cron/hourly.php
@daily   php /srv/app/cron/daily.php
@midnight php /srv/app/cron/midnight.php
@weekly  php /srv/app/cron/weekly.php
@monthly php /srv/app/cron/monthly.php
@yearly  php /srv/app/cron/yearly.php
@annually php /srv/app/cron/annually.php
@reboot  /srv/app/bin/warm-cache.sh
"""


def test_macros_and_reboot(tmp_path: Path) -> None:
    text, data = import_crontab(tmp_path, MACROS)
    schedules = data["schedules"]
    kinds = ["hourly", "daily", "midnight", "weekly", "monthly", "yearly", "annually"]
    assert list(schedules) == [*kinds, "warm-cache"]
    for kind in kinds:
        assert schedules[kind]["cron"] == f"@{kind}"
    assert schedules["warm-cache"]["cron"] == "@reboot"
    assert "@reboot: stoker fires it once per machine boot, when the daemon starts after it" in comments(text)
    expected: dict[str, tuple[str, str | None]] = {kind: (f"@{kind}", None) for kind in kinds}
    check_schedules(tmp_path, text, {**expected, "warm-cache": ("@reboot", None)})


SHELL_LINES = r"""
0 2 * * * mysqldump shop | gzip > /backups/shop-$(date +\%Y\%m\%d).sql.gz
*/10 * * * * curl -fsS https://example.com/ping | logger -t ping
*/15 * * * * wget -q -O - https://example.com/wp-cron.php?doing_wp_cron >/dev/null 2>&1
0 8 * * 1 mail -s "Weekly report" ops@example.com%Hello,%%the weekly report is ready.%
5 4 * * sun find /var/www/app/storage/logs -name '*.log' -mtime +14 -delete
0 3 * * * cd ~/app && php artisan backup:run
0 4 1 jan * APP_ENV=production php /srv/app/yearly.php; echo done
0 0 13 * 5 /srv/bin/friday-the-13th.sh `hostname`
"""


def test_lines_that_need_a_shell_keep_one(tmp_path: Path) -> None:
    text, data = import_crontab(tmp_path, SHELL_LINES)
    s = data["schedules"]
    assert list(s) == [
        "mysqldump-shop",
        "curl-ping",
        "wget",
        "mail-weekly-report-ops-example-com",
        "find-logs-log",
        "artisan-backup-run",
        "yearly",
        "friday-the-13th",
    ]
    # cron's \% is a literal %: the shell gets date +%Y%m%d
    assert s["mysqldump-shop"]["command"] == [
        "/bin/sh",
        "-c",
        "mysqldump shop | gzip > /backups/shop-$(date +%Y%m%d).sql.gz",
    ]
    assert s["curl-ping"]["command"] == [
        "/bin/sh",
        "-c",
        "curl -fsS https://example.com/ping | logger -t ping",
    ]
    # the glob's ? needs the shell; the trailing redirections still go
    assert s["wget"]["command"] == [
        "/bin/sh",
        "-c",
        "wget -q -O - https://example.com/wp-cron.php?doing_wp_cron",
    ]
    # % ends the command; the rest is its standard input, each further % a newline
    mail = s["mail-weekly-report-ops-example-com"]["command"]
    assert mail == [
        "/bin/sh",
        "-c",
        "printf %s 'Hello,\n\nthe weekly report is ready.\n' | (mail -s \"Weekly report\" ops@example.com)",
    ]
    # a quoted glob is no glob: no shell needed
    assert s["find-logs-log"]["command"] == "find /var/www/app/storage/logs -name '*.log' -mtime +14 -delete"
    # a relative or ~ cd stays in the command (cron started from the user's home)
    assert s["artisan-backup-run"]["command"] == ["/bin/sh", "-c", "cd ~/app && php artisan backup:run"]
    assert "directory" not in s["artisan-backup-run"]
    assert s["yearly"]["command"][2] == "APP_ENV=production php /srv/app/yearly.php; echo done"
    assert s["friday-the-13th"]["command"] == ["/bin/sh", "-c", "/srv/bin/friday-the-13th.sh `hostname`"]
    said = comments(text)
    assert "through /bin/sh -c, as cron ran it: cron's % gave it standard input." in said
    assert (
        "through /bin/sh -c, as cron ran it: the shell expands `https://example.com/wp-cron.php?doing_wp_cron`"
        in said
    )
    check_schedules(
        tmp_path,
        text,
        {
            "mysqldump-shop": ("0 2 * * *", None),
            "curl-ping": ("*/10 * * * *", None),
            "wget": ("*/15 * * * *", None),
            "mail-weekly-report-ops-example-com": ("0 8 * * 1", None),
            "find-logs-log": ("5 4 * * sun", None),
            "artisan-backup-run": ("0 3 * * *", None),
            "yearly": ("0 4 1 jan *", None),
            "friday-the-13th": ("0 0 13 * 5", None),
        },
    )


CRON_TZ = """\
SHELL=/bin/bash
0 9 * * 1-5 php /srv/app/standup.php
CRON_TZ=America/New_York
0 9 * * 1-5 php /srv/app/standup.php --office=nyc
30 1 * * * php /srv/app/nightly.php | tee -a /tmp/nightly.out
CRON_TZ=Asia/Shanghai
0 3 * * * php /srv/app/nightly.php --office=sha
"""


def test_cron_tz_and_shell(tmp_path: Path) -> None:
    text, data = import_crontab(tmp_path, CRON_TZ)
    s = data["schedules"]
    assert list(s) == ["standup", "standup-2", "nightly", "nightly-2"]
    assert "timezone" not in s["standup"]
    assert s["standup-2"]["timezone"] == "America/New_York"
    assert s["nightly"]["timezone"] == "America/New_York"
    assert s["nightly-2"]["timezone"] == "Asia/Shanghai"
    # SHELL is the shell a line that needs one goes through, and in the environment as cron set it
    assert s["nightly"]["command"] == [
        "/bin/bash",
        "-c",
        "php /srv/app/nightly.php | tee -a /tmp/nightly.out",
    ]
    assert s["standup"]["environment"] == {"SHELL": "/bin/bash"}
    check_schedules(
        tmp_path,
        text,
        {
            "standup": ("0 9 * * 1-5", None),
            "standup-2": ("0 9 * * 1-5", "America/New_York"),
            "nightly": ("30 1 * * *", "America/New_York"),
            "nightly-2": ("0 3 * * *", "Asia/Shanghai"),
        },
    )


def test_a_fall_back_hour_fires_as_cron_does(tmp_path: Path) -> None:
    """A time in the hour that repeats when clocks go back runs once, as Debian cron does;
    stoker's `stoker cron` says the same for the original expression as the import's."""
    text, _ = import_crontab(tmp_path, "CRON_TZ=America/New_York\n30 1 * * * php /srv/app/nightly.php\n")
    schedule = parse_config(text, str(tmp_path / "stoker.toml")).schedules["nightly"]
    zone = ZoneInfo("America/New_York")
    after = dt.datetime(2026, 10, 30, tzinfo=zone)
    times = [
        dt.datetime.fromtimestamp(t, zone).isoformat()
        for t in fire_times(schedule.trigger(), after.timestamp(), 6)
    ]
    said = stoker_cli(
        "cron",
        "30 1 * * *",
        "--tz",
        "America/New_York",
        "--after",
        after.isoformat(),
        "-n",
        "6",
        "--json",
        cwd=tmp_path,
    )
    assert said.returncode == 0, said.stderr
    assert json.loads(said.stdout) == times
    assert [t[:10] for t in times] == [
        "2026-10-30",
        "2026-10-31",
        "2026-11-01",
        "2026-11-02",
        "2026-11-03",
        "2026-11-04",
    ]


FLOCK = """\
* * * * * flock -n /tmp/schedule.lock php artisan schedule:run
*/10 * * * * cd /var/www/shop && /usr/bin/flock -xn /tmp/sync.lock php bin/sync.php >> /dev/null 2>&1
0 * * * * flock -w 30 /tmp/hourly.lock php bin/hourly.php
"""


def test_flock_n_is_overlap_skip(tmp_path: Path) -> None:
    text, data = import_crontab(tmp_path, FLOCK)
    s = data["schedules"]
    assert s["artisan-schedule-run"]["command"] == "php artisan schedule:run"
    assert s["artisan-schedule-run"]["overlap"] == "skip"
    assert s["sync"] == {
        "cron": "*/10 * * * *",
        "command": "php bin/sync.php",
        "directory": "/var/www/shop",
        "overlap": "skip",
    }
    # waiting for the lock (-w) is not what skip does: it stays as it was
    assert s["hourly"]["command"] == "flock -w 30 /tmp/hourly.lock php bin/hourly.php"
    assert s["hourly"]["overlap"] == "allow"
    assert "was `flock -n /tmp/schedule.lock`: a run still going is not doubled" in comments(text)


def test_crontab_from_stdin(tmp_path: Path) -> None:
    """`crontab -l | stoker import -`: told by its contents; and with --format crontab."""
    for extra in ([], ["--format", "crontab"]):
        result = stoker_cli("import", *extra, "-", cwd=tmp_path, input=USER_CRONTAB + LARAVEL)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("# Converted by `stoker import` from <stdin> (crontab).")
        assert "artisan-schedule-run" in tomllib.loads(result.stdout)["schedules"]
        (tmp_path / "stoker.toml").write_text(result.stdout)
        assert stoker_cli("check", cwd=tmp_path).returncode == 0
    piped = subprocess.run(
        f"printf '%s\\n' {shlex.quote(LARAVEL.strip())} | {shlex.quote(sys.executable)} -m stoker import -",
        shell=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert piped.returncode == 0, piped.stderr
    assert 'command = "php artisan schedule:run"' in piped.stdout
    bad = stoker_cli("import", "-", cwd=tmp_path, input="* * * * * php a.php\n61 * * * * php b.php\n")
    assert bad.returncode == 2
    assert bad.stderr.startswith("stoker: <stdin>: line 2: '61 * * * *' is not a cron expression")


def test_a_cron_d_file_through_stdin_says_its_format(tmp_path: Path) -> None:
    """Piped, a cron.d file has no path to tell its user column by: --format system-crontab."""
    result = stoker_cli("import", "--format", "system-crontab", "-", cwd=tmp_path, input=CRON_D_PHP)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# Converted by `stoker import` from <stdin> (system crontab).")
    assert tomllib.loads(result.stdout)["schedules"]["cron"]["user"] == "www-data"


def test_imported_crontab_runs(stoker: Stoker) -> None:
    """What the import made runs: cd → directory, environment, cron's % stdin, a pipe."""
    work = stoker.root / "work"
    work.mkdir()
    (work / "hello.sh").write_text('#!/bin/sh\necho "in $(pwd) as $GREETING"\n')
    (work / "hello.sh").chmod(0o755)
    source = stoker.root / "crontab.txt"
    source.write_text(
        f"GREETING=hi there\n"
        f"0 4 * * * cd {work} && ./hello.sh >> /dev/null 2>&1\n"
        "0 5 * * * tr a-z A-Z%first line%second \\% line\n"
        "0 6 * * * echo one two | wc -w\n"
    )
    result = stoker_cli("import", str(source), cwd=stoker.root)
    assert result.returncode == 0, result.stderr
    stoker.write(result.stdout)
    stoker.up()
    outputs = {}
    for name in ("hello", "tr-a-z-a-z", "echo-one-two"):
        job = stoker.json("schedule", "run", name)
        outputs[name] = stoker.client.wait(job["id"], timeout=30)
        assert outputs[name].state == "succeeded", outputs[name]
    assert outputs["hello"].output == f"in {work} as hi there\n"
    assert outputs["tr-a-z-a-z"].output == "FIRST LINE\nSECOND % LINE"
    assert outputs["echo-one-two"].output.strip() == "2"
    wait_for(lambda: stoker.terminate() == 0, what="the daemon to stop")


# ----------------------------------------------------------------------------------------------
# Errors: exit 2, the file, the line, and what was expected
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("* * * * php a.php\n", r"line 1: '\* \* \* \* php' is not a cron expression"),
        (
            "# c\n\n*/5 * * *\n",
            r'line 3: expected MINUTE HOUR DAY MONTH WEEKDAY COMMAND, got "\*/5 \* \* \*"',
        ),
        ("0 25 * * * php a.php\n", r"line 1: '0 25 \* \* \*' is not a cron expression: bad hour"),
        (
            "@fortnightly php a.php\n",
            r'line 1: unknown macro "@fortnightly"; expected one of @reboot, @yearly',
        ),
        ("@daily\n", r'line 1: expected MINUTE HOUR DAY MONTH WEEKDAY COMMAND, got "@daily"'),
        ("* * * * * %only stdin\n", r'line 1: expected a command after "\* \* \* \* \*"'),
        ("CRON_TZ=Mars/Olympus\n* * * * * php a.php\n", r"line 1: CRON_TZ: unknown time zone 'Mars/Olympus'"),
        ("* * * * * echo 'unfinished\n", r"line 1: cannot read the command: an unterminated ' quote"),
        ("* * * * * echo $(date\n", r"line 1: cannot read the command: an unterminated \$\("),
    ],
)
def test_malformed_lines_name_their_line(tmp_path: Path, content: str, message: str) -> None:
    source = tmp_path / "crontab"
    source.write_text(content)
    result = stoker_cli("import", "--format", "crontab", str(source), cwd=tmp_path)
    assert result.returncode == 2, result.stdout
    assert re.search(f"^stoker: {re.escape(str(source))}: {message}", result.stderr), result.stderr


def test_system_line_without_a_command(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"line 1: expected MINUTE HOUR DAY MONTH WEEKDAY USER COMMAND"):
        ct.convert("0 3 * * * root\n", "/etc/cron.d/x")


def test_a_user_crontab_in_cron_d_is_refused() -> None:
    """cron would run "artisan schedule:run" as the user "php": said, not converted."""
    with pytest.raises(InputError, match=r'line 2: the user column reads "php", the start of a command'):
        ct.convert("# shop\n* * * * * php artisan schedule:run\n", "/etc/cron.d/shop")


# ----------------------------------------------------------------------------------------------
# The pure parts
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "text", "fmt"),
    [
        ("/var/spool/cron/crontabs/crontab", "", "crontab"),
        ("/etc/cron.d/php", "", "crontab"),
        ("/x/jobs", LARAVEL, "crontab"),
        ("/x/jobs", "MAILTO=a@b\n@daily php x.php\n", "crontab"),
        ("/x/jobs", "# c\nPATH=/bin\n0 3 * * * root run\n", "crontab"),
        ("/x/procs", "web: puma\n", "procfile"),
    ],
)
def test_detect_crontab(file: str, text: str, fmt: str) -> None:
    assert detect_format(file, text) == fmt


@pytest.mark.parametrize(
    ("file", "text", "system"),
    [
        ("/etc/crontab", "", True),
        ("/etc/cron.d/backup", "", True),
        ("/home/ann/crontab.txt", "0 3 * * * root run\n17 * * * * root other\n", True),
        ("/home/ann/crontab.txt", "# m h dom mon dow user command\n0 3 * * * www-data run\n", True),
        ("/home/ann/crontab.txt", "# m h  dom mon dow   command\n0 3 * * * root run\n", False),
        ("/home/ann/crontab.txt", "0 3 * * * www-data run\n", False),
        ("/home/ann/crontab.txt", "@daily root run\n", True),
    ],
)
def test_user_column_is_told(file: str, text: str, system: bool) -> None:
    assert ct.is_system(file, text) is system


@pytest.mark.parametrize(
    ("line", "command", "stdin"),
    [
        ("php a.php", "php a.php", None),
        (r"date +\%F", "date +%F", None),
        ("mail x%", "mail x", ""),
        ("mail x%a%b", "mail x", "a\nb"),
        (r"mail x%50\% off%bye", "mail x", "50% off\nbye"),
        (r"echo a\b", r"echo a\b", None),  # other backslashes are the shell's
        ("echo '%'", "echo '", "'"),  # quotes do not protect a % from cron
    ],
)
def test_cron_percent(line: str, command: str, stdin: str | None) -> None:
    assert ct.split_percent(line) == (command, stdin)


@given(
    st.text(alphabet=st.characters(blacklist_characters="%\\\x00"), max_size=30),
    st.lists(st.text(max_size=10).filter(lambda line: not line.endswith("\\"))),
)
def test_escaped_percent_round_trips(command: str, lines: list[str]) -> None:
    """Whatever the input lines hold, escaping their % as \\% and joining them with % gives
    them back as the command's standard input (a line ending in a backslash cannot be
    written: cron reads its \\% as a literal %)."""
    escaped = "%".join(line.replace("%", "\\%") for line in lines)
    got = ct.split_percent(command + ("%" + escaped if lines else ""))
    assert got == (command, "\n".join(lines) if lines else None)


_WORD = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=12
)


@given(st.lists(_WORD, min_size=1, max_size=6))
def test_quoted_words_need_no_shell(words: list[str]) -> None:
    """shlex.quote'd words read back as themselves and need no shell; stoker's own split of
    the command the import writes agrees."""
    line = " ".join(shlex.quote(w) for w in words)
    tokens = scan(line)
    assert [t.value for t in tokens] == words
    assert not needs_shell(tokens)
    entry = ct.Entry(1, "", "@daily", None, line, None)
    out = ct.schedule(entry, ct._Context(), set(), "/x/crontab")
    command = out.get("command")
    assert (shlex.split(command) if isinstance(command, str) else command) == words


@pytest.mark.parametrize(
    ("line", "shell"),
    [
        ("php artisan schedule:run", False),
        ("php 'a b.php' \"c d\" e\\ f", False),
        ("find . -name '*.log'", False),
        ("ls *.log", True),
        ("echo $HOME", True),
        ('echo "$HOME"', True),
        ("echo '$HOME'", False),
        ("a | b", True),
        ("a; b", True),
        ("a && b", True),
        ("a & ", True),
        ("x=1 php a.php", True),
        ("'x=1' php a.php", False),
        ("php a.php x=1", False),
        ("cat ~/notes", True),
        ("echo `date`", True),
        ("php a.php # a comment", False),
        ("php a#b.php", False),
    ],
)
def test_needs_shell(line: str, shell: bool) -> None:
    assert needs_shell(scan(line)) is shell


def test_scan_errors() -> None:
    for line, problem in [("echo 'a", "'"), ('echo "a', '"'), ("echo `a", "backtick"), ("echo ${a", "${")]:
        with pytest.raises(ShellSyntaxError, match=re.escape(problem)):
            scan(line)


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("php artisan schedule:run", "artisan-schedule-run"),
        ("/usr/bin/php /var/www/app/cron/cleanup.php --days=7", "cleanup"),
        ("/usr/bin/php8.2 -f /srv/x.php", "php8-2-x"),
        ("python3 manage.py clearsessions", "manage-clearsessions"),
        ("nice -n 10 /usr/local/bin/backup.sh", "backup"),
        ("/usr/bin/php /srv/cron/cleanup.php --days 7", "cleanup-7"),
        ("$HOME/bin/x", "cron"),
        ("/srv/Bin/Report Generator.PHP", "report-generator-php"),
    ],
)
def test_names_from_commands(line: str, name: str) -> None:
    assert cronline.name_for(scan(line)) == name


def test_names_are_unique() -> None:
    taken: set[str] = set()
    assert [cronline.unique_name(n, taken) for n in ["a", "a", "b", "a", "all"]] == [
        "a",
        "a-2",
        "b",
        "a-3",
        "all-2",
    ]


@given(
    st.tuples(
        st.sampled_from(["*", "0", "*/5", "0,30", "10-20", "15"]),
        st.sampled_from(["*", "3", "*/6", "9-17", "0,12"]),
        st.sampled_from(["*", "1", "13", "1-7", "*/10", "15"]),
        st.sampled_from(["*", "1", "*/3", "jan", "6-8"]),
        st.sampled_from(["*", "0", "7", "1-5", "mon", "sat,sun", "5"]),
    ),
    st.sampled_from([None, "UTC", "Europe/Berlin", "America/New_York"]),
)
def test_any_expression_fires_as_written(fields: tuple[str, ...], zone: str | None) -> None:
    """A crontab line of any of these fields, imported, fires when the brute force says."""
    expression = " ".join(fields)
    text = (f"CRON_TZ={zone}\n" if zone else "") + f"{expression} php /srv/app/x.php\n"
    output = convert(text, "/x/crontab", format="crontab")
    schedule = parse_config(output, "/x/stoker.toml").schedules["x"]
    assert schedule.cron == expression
    assert_fires_like_cron(schedule, expression, zone or None)


def test_the_system_zone_is_what_a_schedule_without_cron_tz_gets() -> None:
    output = convert("0 3 * * * php /srv/x.php\n", "/x/crontab", format="crontab")
    schedule = parse_config(output, "/x/stoker.toml").schedules["x"]
    zone = zone_named(schedule.timezone)
    assert str(zone) == str(system_zone())


# ----------------------------------------------------------------------------------------------
# docs/import-crontab.md
# ----------------------------------------------------------------------------------------------


def test_the_docs_example_is_what_the_import_prints(tmp_path: Path) -> None:
    """The page's input, piped as it says, gives the page's output, which passes stoker check."""
    page = (DOCS / "import-crontab.md").read_text()
    source = re.search(r"```crontab\n(.*?)```", page, re.S)
    shown = re.search(r"`crontab -l \| stoker import -` prints:\n\n```toml\n(.*?)```", page, re.S)
    assert source and shown
    result = stoker_cli("import", "-", cwd=tmp_path, input=source.group(1))
    assert result.returncode == 0, result.stderr
    assert result.stdout == shown.group(1)
    config = parse_config(result.stdout, str(tmp_path / "stoker.toml"))
    assert config.schedules["artisan-schedule-run"].cron == "* * * * *"
    for block in re.findall(r"(<!-- fragment -->\n)?```toml\n(.*?)```", page, re.S):
        if not block[0]:
            parse_config(block[1], str(tmp_path / "stoker.toml"))


_TIMES = ("*", "*/5", "0", "7", "1-5", "mon", "@daily", "@reboot", "root", "CRON_TZ=UTC", "X=1", "=")
_SHELL = ("php", "a.php", "cd", "/srv", "&&", "|", ";", ">>", "/dev/null", "2>&1", "%", "\\%", "'", '"')
_MORE = ("$(", ")", "`", "#", "~", "\t")
_PIECES = st.sampled_from((*_TIMES, *_SHELL, *_MORE))


@given(st.lists(st.lists(_PIECES, max_size=9).map(" ".join), max_size=6).map("\n".join))
def test_any_text_converts_or_is_refused_plainly(text: str) -> None:
    """Whatever the lines, the import gives a config stoker takes, or an InputError naming
    the file; never another exception."""
    try:
        output = convert(text, "/x/crontab", format="crontab")
    except InputError as e:
        assert str(e).startswith("/x/crontab: ")
        return
    parse_config(output, "/x/stoker.toml")
