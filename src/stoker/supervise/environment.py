"""What a child's environment starts from, before its config's `environment` and stoker's own
variables are laid over it. Pure: the daemon's environment and config in, a dict out.

Two rules (docs/security.md, "What children inherit"):

- Secrets stay with the daemon. A variable the config reads a secret from (`env:NAME`: the
  token, a webhook's URL or headers), PGPASSWORD when the store is PostgreSQL (libpq reads the
  daemon's password from it), and any variable that holds the API token itself (however the
  token was given) are left out: a program running as `nobody` must not be able to drive the
  API, which acts as root.
- `inherit_environment = false` starts from a clean environment, as systemd does for a
  service: of the daemon's variables only CLEAN_KEPT (and the locale's LC_*) are kept.

Either way a child with `user` gets HOME, USER, LOGNAME and SHELL from that user's passwd
entry (stoker.supervise.identity); a clean one without `user` gets the daemon's own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from stoker.config import Config
from stoker.supervise.identity import Identity, own_account

CLEAN_KEPT = frozenset({"PATH", "LANG", "LANGUAGE", "TZ", "STOKER_NODE"})
"""What a clean environment keeps of the daemon's: where programs are, the locale and time zone
(read by libc, not secrets), and STOKER_NODE (stoker's own: which node runs the child)."""

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""PATH of a clean environment when the daemon has none (systemd's default for services)."""

POSTGRES_PASSWORD = "PGPASSWORD"


def secret_names(
    environ: Mapping[str, str], env_secrets: Iterable[str], token: str | None, store: str
) -> set[str]:
    """The variables of `environ` no child may see: those `env:` read (`env_secrets`),
    PGPASSWORD with a PostgreSQL store, and any whose value is the API `token` (compared as
    the config compares it: without surrounding white space)."""
    names = set(env_secrets)
    if store != "sqlite":
        names.add(POSTGRES_PASSWORD)
    if token:
        names.update(name for name, value in environ.items() if value.strip() == token)
    return names


def inherited(environ: Mapping[str, str], config: Config) -> dict[str, str]:
    """`environ` (the daemon's) as the children of `config` may inherit it: without the
    variables of secret_names."""
    hidden = secret_names(environ, config.env_secrets, config.daemon.token, config.daemon.store)
    return {name: value for name, value in environ.items() if name not in hidden}


def kept_when_clean(name: str) -> bool:
    return name in CLEAN_KEPT or name.startswith("LC_")


def child_base(inherited: Mapping[str, str], *, inherit: bool, identity: Identity) -> dict[str, str]:
    """A child's environment before its config's `environment`: `inherited` (the daemon's,
    without secrets) whole or, without `inherit`, only what a clean environment keeps; then
    the account variables of its user."""
    if inherit:
        env = dict(inherited)
        env.update(identity.variables)
        return env
    env = {name: value for name, value in inherited.items() if kept_when_clean(name)}
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(identity.variables or own_account())
    return env


__all__ = [
    "CLEAN_KEPT",
    "DEFAULT_PATH",
    "child_base",
    "inherited",
    "kept_when_clean",
    "secret_names",
]
