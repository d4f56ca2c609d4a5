"""stoker.toml: decoded once into immutable, fully validated objects that everyone reads.

Loading happens in three steps, each with one job:

1. ``tomllib`` turns the text into a dict (syntax errors → ``line N: invalid TOML``).
2. A key check walks the dict in file order so that typos and not-yet-implemented features
   are refused by name (with a "did you mean" hint) before anything else: a config must
   never silently do nothing.
3. ``msgspec.convert(..., strict=True)`` checks types against private "raw" structs, and a
   post-validation pass turns raw values (durations, sizes, signals, paths, tokens) into the
   public frozen structs.

Every refusal is a :class:`ConfigError` whose one-line message names the file, the table,
the key and what was expected. No other exception escapes for bad input.

The package holds one module per table family, each with its frozen struct(s), raw shape and
checks: :mod:`~stoker.config.daemon`, :mod:`~stoker.config.programs`,
:mod:`~stoker.config.jobs` (tasks and queues), :mod:`~stoker.config.schedules`,
:mod:`~stoker.config.notify`; besides them :mod:`~stoker.config.errors` (ConfigError and how an
error is located), :mod:`~stoker.config.values` (checks several tables share),
:mod:`~stoker.config.loading` (the file, the TOML, the whole :class:`Config`) and
:mod:`~stoker.config.starter` (the file ``stoker init`` writes). Import from ``stoker.config``:
the names below are the public ones.
"""

from stoker.config.daemon import MIN_TOKEN, DaemonConfig
from stoker.config.errors import ConfigError
from stoker.config.jobs import DEFAULT_QUEUE, QueueConfig, TaskConfig
from stoker.config.loading import MAX_CONFIG_SIZE, Config, load_config, parse_config
from stoker.config.notify import NOTIFY_EVENTS, CrashLoopConfig, NotifyConfig
from stoker.config.programs import InstanceSpec, LogConfig, ProgramConfig, find_cycle
from stoker.config.schedules import SCHEDULE_TASK_PREFIX, ScheduleConfig, internal_queues, internal_tasks
from stoker.config.starter import STARTER_TOML
from stoker.config.values import Backoff
from stoker.locate import find_config_path

__all__ = [
    "DEFAULT_QUEUE",
    "MAX_CONFIG_SIZE",
    "MIN_TOKEN",
    "NOTIFY_EVENTS",
    "SCHEDULE_TASK_PREFIX",
    "STARTER_TOML",
    "Backoff",
    "Config",
    "ConfigError",
    "CrashLoopConfig",
    "DaemonConfig",
    "InstanceSpec",
    "LogConfig",
    "NotifyConfig",
    "ProgramConfig",
    "QueueConfig",
    "ScheduleConfig",
    "TaskConfig",
    "find_config_path",
    "find_cycle",
    "internal_queues",
    "internal_tasks",
    "load_config",
    "parse_config",
]
