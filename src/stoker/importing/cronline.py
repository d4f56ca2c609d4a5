"""One crontab command line, shaped for a schedule: what cron's shell did, said in stoker's keys.

A leading ``cd /dir &&`` is the ``directory``; trailing output redirections go (each run's output
is the job's); ``flock -n LOCK`` is ``overlap = "skip"``; what is left runs directly when it is
plain words, else through the shell; and the words name the schedule. Pure functions over the
tokens of :func:`stoker.importing.shellwords.scan`.
"""

from __future__ import annotations

import posixpath
import re
import shlex

from stoker.importing.shellwords import Token, needs_shell

# Words that only start the program that matters, for naming a schedule after its command.
LAUNCHERS = frozenset(
    {"php", "php-cli", "php7", "php8", "python", "python2", "python3", "node", "nodejs", "ruby", "perl"}
    | {"bash", "sh", "dash", "zsh", "env", "nice", "ionice", "nohup", "timeout", "exec", "sudo", "time"}
    | {"chronic", "flock", "xargs", "npx", "npm", "yarn", "bundle", "run-one"}
)
# Where stdout or stderr go: 2>&1, >> file, > /dev/null, 2>/dev/null, &> file.
_OUTPUT = re.compile(r"[12]?(>|>>|>\||>&)|&>")
_EXTENSIONS = re.compile(r"\.(php|py|sh|bash|rb|pl|js|mjs|cjs)$")


def command_for(text: str, tokens: list[Token], stdin: str | None, shell: str) -> tuple[str | list[str], str]:
    """The command to write for `text` (its `tokens`), fed `stdin` (cron's %), and why it goes
    through `shell` ("" when it does not: then the words as they are, a string when stoker's
    own split reads it back the same, else a list)."""
    why = ""
    if stdin is not None:
        why = "cron's % gave it standard input"
        script = "(" + text + ("\n)" if "#" in text else ")")  # a comment would swallow the )
        text = f"printf %s {shlex.quote(stdin)} | {script}"
    elif needs_shell(tokens):
        why = _shell_reason(tokens)
    if why:
        return [shell, "-c", text], why
    words = [t.value for t in tokens]
    as_line = " ".join(words) if all(_plain(w) for w in words) else text
    return (as_line if shlex.split(as_line) == words else words), ""


def _plain(word: str) -> bool:
    return bool(word) and re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", word) is not None


def _shell_reason(tokens: list[Token]) -> str:
    ops = sorted({t.value for t in tokens if t.kind == "op"})
    if ops:
        return "it uses " + ", ".join(f"`{o}`" for o in ops)
    expanding = next((t.value for t in tokens if t.expands), None)
    if expanding is not None:
        return f"the shell expands `{expanding}`"
    return "it begins with a variable assignment"


def leading_cd(tokens: list[Token]) -> tuple[str | None, list[Token]]:
    """``cd /abs/dir && rest`` → ("/abs/dir", rest). A relative or expanding DIR stays in the
    command: cron's cd started from the user's home, which this file does not know."""
    if (
        len(tokens) > 3
        and tokens[0].kind == tokens[1].kind == "word"
        and tokens[0].value == "cd"
        and not tokens[1].expands
        and tokens[1].value.startswith("/")
        and tokens[2].kind == "op"
        and tokens[2].value == "&&"
        and tokens[3].kind == "word"
    ):
        return tokens[1].value, tokens[3:]
    return None, tokens


def flock_n(tokens: list[Token]) -> tuple[list[Token], str | None]:
    """``flock -n LOCKFILE cmd…`` (the crontab idiom for "not while the last run is still
    going") → (cmd…, LOCKFILE): ``overlap = "skip"`` says the same. Any other flock (waiting
    for the lock, -c, a timeout) stays in the command."""
    if len(tokens) < 4 or tokens[0].expands or posixpath.basename(tokens[0].value) != "flock":
        return tokens, None
    i, nonblocking = 1, False
    while i < len(tokens) and tokens[i].value.startswith("-"):
        option = tokens[i].value
        if option in ("--nonblock", "--exclusive", "--close") or re.fullmatch(r"-[nxo]+", option):
            nonblocking = nonblocking or option == "--nonblock" or (option[1] != "-" and "n" in option)
            i += 1
        else:
            return tokens, None
    rest = tokens[i + 1 :]
    if not nonblocking or not rest or tokens[i].kind != "word" or tokens[i].expands:
        return tokens, None
    if rest[0].kind != "word" or rest[0].value.startswith("-"):
        return tokens, None
    return rest, tokens[i].value


def trailing_redirections(tokens: list[Token], command: str) -> tuple[list[Token], str]:
    """The tokens without the output redirections at their end, and those, as written."""
    rest = tokens
    while len(rest) >= 2:
        op, target = rest[-2], rest[-1]
        if not (
            op.kind == "op" and _OUTPUT.fullmatch(op.value) and target.kind == "word" and not target.expands
        ):
            break
        rest = rest[:-2]
    if rest is tokens or not rest or rest[-1].kind == "op":
        return tokens, ""  # nothing to take, or what is left would not be a command
    return rest, command[tokens[len(rest)].start : tokens[-1].end]


def name_for(tokens: list[Token]) -> str:
    """A schedule name from its command: ``php artisan schedule:run`` → ``artisan-schedule-run``,
    ``/usr/bin/php /srv/cron/cleanup.php --days 7`` → ``cleanup-7``, ``nice -n 10 backup.sh``
    → ``backup``."""
    words: list[str] = []
    if tokens and tokens[0].value == "cd":  # a cd that stayed in the command names nothing
        after = next((i for i, t in enumerate(tokens) if t.kind == "op" and t.value in ("&&", ";")), None)
        tokens = tokens[after + 1 :] if after is not None else tokens
    for token in tokens:
        if token.kind == "op":
            if words:
                break
            continue
        value = token.value
        if not words and (posixpath.basename(value) in LAUNCHERS or "=" in value or value.endswith(".lock")):
            continue
        if value.startswith("-") or token.expands or (not words and value.isdigit()):
            continue  # options, what the shell fills in, and an option's number
        part = _EXTENSIONS.sub("", posixpath.basename(value.rstrip("/")))
        slug = re.sub(r"[^a-z0-9_]+", "-", part.lower()).strip("-")
        if slug:
            words.append(slug)
        if len(words) == 3:
            break
    return "-".join(words)[:48].strip("-") or "cron"


def unique_name(name: str, taken: set[str]) -> str:
    """`name`, or `name-2`, `name-3` … when taken; recorded as taken."""
    chosen, n = name, 1
    while chosen in taken or chosen == "all":
        n += 1
        chosen = f"{name}-{n}"
    taken.add(chosen)
    return chosen
