"""The documentation stays true: every TOML example in README.md and docs/*.md loads with
stoker's own config loader, and every link to a file of the repository finds it.

A ```toml block is a whole config unless the line just above its fence is
``<!-- fragment -->``: then it is a partial snippet (a few keys of a table) and is only parsed
as TOML. A full example is written to a temp folder as stoker.toml and loaded with
``stoker.config.load_config``, which checks everything ``stoker check`` does short of its
warnings (a command need not exist on this machine; a `watch` path must, so one is made for
each path an example watches; an `env:NAME` value is read, so each NAME is set).

Links between the pages are checked by ``make docs`` (``mkdocs build --strict``); links from
the pages to files outside docs/ are written root-relative (``/bench/README.md``), which mkdocs
leaves alone, so they are checked here, anchors too where the target is markdown.

And the reference names what the code has: every config key (configuration.md), every command
and option (cli.md), every route (http-api.md). A key, command or route added without a word in
the docs fails here.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from stoker.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FRAGMENT = "<!-- fragment -->"


@dataclass(frozen=True)
class Block:
    file: Path
    line: int  # of the opening fence, 1-based
    text: str
    fragment: bool

    @property
    def where(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def toml_blocks(path: Path) -> list[Block]:
    """The ```toml blocks of one markdown file (fences at the start of a line)."""
    lines = path.read_text().split("\n")
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.strip() == "```toml":
            previous = next((lines[i].strip() for i in range(index - 1, -1, -1) if lines[i].strip()), "")
            end = index + 1
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            assert end < len(lines), f"{path.relative_to(ROOT)}:{index + 1}: a ```toml block that never ends"
            text = "\n".join(lines[index + 1 : end]) + "\n"
            blocks.append(Block(path, index + 1, text, previous == FRAGMENT))
            index = end + 1
        else:
            index += 1
    return blocks


ALL_BLOCKS = [block for page in pages() for block in toml_blocks(page)]


def test_the_pages_have_toml_examples() -> None:
    """The walk finds them: a change in the fences' spelling must not make the test pass empty."""
    assert len([b for b in ALL_BLOCKS if not b.fragment]) >= 10
    assert any(b.file.name == "README.md" for b in ALL_BLOCKS)


def test_a_fragment_is_marked_by_the_line_above_its_fence(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        'A whole config:\n\n```toml\n[programs.a]\ncommand = "true"\n```\n\n'
        f'{FRAGMENT}\n```toml\nrestart = "never"\n```\n'
    )
    whole, fragment = toml_blocks(page)
    assert not whole.fragment and whole.text == '[programs.a]\ncommand = "true"\n'
    assert fragment.fragment and fragment.text == 'restart = "never"\n'


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[b.where for b in ALL_BLOCKS])
def test_toml_example(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        data = tomllib.loads(block.text)
    except tomllib.TOMLDecodeError as exc:
        pytest.fail(f"{block.where}: not TOML: {exc}", pytrace=False)
    if block.fragment:
        return
    for program in data.get("programs", {}).values():
        for watched in program.get("watch", []) if isinstance(program, dict) else []:
            target = tmp_path / watched
            if watched.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()
    # `env:NAME` values (tokens, webhook URLs) are read at load: give each a value that fits both
    for name in re.findall(r'"env:([A-Za-z_][A-Za-z0-9_]*)"', block.text):
        monkeypatch.setenv(name, "https://hooks.example.com/0123456789abcdef")
    path = tmp_path / "stoker.toml"
    path.write_text(block.text)
    try:
        load_config(path)
    except ConfigError as exc:
        pytest.fail(
            f"{block.where}: the example does not load: {exc}\n"
            f"(a partial snippet is marked by a line {FRAGMENT} just above its fence)",
            pytrace=False,
        )


# Links: [text](target) and ![alt](target), outside code.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def prose(path: Path) -> list[tuple[int, str]]:
    """The lines of a markdown file outside fenced code, numbered from 1, inline code removed."""
    return [(number, re.sub(r"`[^`]*`", "", line)) for number, line in prose_with_code(path)]


def prose_with_code(path: Path) -> list[tuple[int, str]]:
    """The lines of a markdown file outside fenced code, numbered from 1."""
    fence = False
    lines = []
    for number, line in enumerate(path.read_text().split("\n"), start=1):
        if line.lstrip().startswith("```"):
            fence = not fence
            continue
        if not fence:
            lines.append((number, line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading (and mkdocs' for the headings used here)."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in prose_with_code(path):
        match = re.match(r"^#+ (.*)$", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def repository_links() -> list[tuple[str, Path, str]]:
    """(where, target path, anchor) of every link to a file of the repository: the README's
    relative links, and the pages' root-relative ones (the links between pages are mkdocs')."""
    found = []
    for page in pages():
        for number, line in prose(page):
            for target in LINK.findall(line):
                if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                    continue
                path, _, anchor = target.partition("#")
                if page.name == "README.md" and page.parent == ROOT:
                    resolved = ROOT / path
                elif path.startswith("/"):
                    resolved = ROOT / path.lstrip("/")
                else:
                    continue
                found.append((f"{page.relative_to(ROOT)}:{number}", resolved, anchor))
    return found


def test_links_to_repository_files_find_them() -> None:
    links = repository_links()
    assert any("bench" in str(target) for _, target, _ in links)
    broken = []
    for where, target, anchor in links:
        if not target.exists():
            broken.append(f"{where}: {target.relative_to(ROOT)} does not exist")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{where}: no heading #{anchor} in {target.relative_to(ROOT)}")
    assert not broken, "\n".join(broken)


# The reference names everything the code has -------------------------------------------------


def page_text(*names: str) -> str:
    return "\n".join((DOCS / name).read_text() for name in names)


def test_the_configuration_reference_names_every_key() -> None:
    from stoker.config import daemon, jobs, notify, programs, schedules

    tables = {
        "[daemon]": daemon._DAEMON_EXPECTED,
        "[programs.NAME]": programs._PROGRAM_EXPECTED,
        "[tasks.NAME]": jobs.TASK_EXPECTED,
        "[queues.NAME]": jobs._QUEUE_EXPECTED,
        "[schedules.NAME]": schedules._SCHEDULE_EXPECTED,
        "[notify.NAME]": notify._NOTIFY_EXPECTED,
    }
    text = page_text("configuration.md")
    missing = [
        f"{table} {key}"
        for table, keys in tables.items()
        for key in keys
        if f"`{key}`" not in text and not ("." in key and f"`{key.split('.')[-1]}`" in text)
    ]
    assert not missing, "keys the code accepts that docs/configuration.md does not name: " + ", ".join(
        missing
    )


def test_the_cli_page_names_every_command_and_option() -> None:
    from stoker.cli import COMMANDS

    text = page_text("cli.md")
    # `stoker start|stop|restart NAME…` names three commands
    named = {word for group in re.findall(r"stoker ([a-z|]+)", text) for word in group.split("|")}
    missing = [f"stoker {name}" for name in COMMANDS if name not in named]
    for name, (_, args) in COMMANDS.items():
        for flags, _options in args:
            options = [flag for flag in flags if flag.startswith("-")]
            # one spelling is enough (`-d` for `-d/--detach`); --json is said once for all
            if options and "--json" not in options and not any(f"{flag}" in text for flag in options):
                missing.append(f"stoker {name} {'/'.join(options)}")
    assert not missing, "commands and options docs/cli.md does not name: " + ", ".join(missing)


def test_the_http_api_page_names_every_route() -> None:
    routes = set()
    for source in (ROOT / "src" / "stoker" / "api").glob("*.py"):
        routes.update(re.findall(r'Route\(\s*"([^"]+)"', source.read_text()))
    assert "/api/v1/jobs" in routes and "/RPC2" in routes
    text = page_text("http-api.md")
    missing = []
    for route in sorted(routes):
        route = re.sub(r"\{(\w+):\w+\}", r"{\1}", route)
        # an action in the path is written out as start|stop|restart, pause|resume …
        prefix = route.split("/{action}")[0]
        if prefix not in text:
            missing.append(route)
    assert not missing, "routes docs/http-api.md does not name: " + ", ".join(missing)
