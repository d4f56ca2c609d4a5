"""Installing for real: the wheel `make dist` builds is a working stoker once installed in a
fresh venv, dashboard files and all; and the Makefile's two stamps let `make demo` install
the runtime only and `make test` the dev tools, in either order.

The wheel is built by the Makefile's own `dist` target, in a copy of the tree (the test writes
nothing into the checkout). pip builds it with setuptools in an isolated environment, fetched
from pip's cache or PyPI, as it does for `make dist` and for every `pip install .`.

It is then installed with `pip install --no-deps` into a fresh `python -m venv`, which sees
its dependencies through a .pth file naming a folder of links to exactly the distributions
stoker's wheel declares (and theirs, recursively), taken from the test's own venv. So the
wheel's files are what runs (stoker is imported from the fresh venv, never from src/), a
dependency missing from pyproject.toml fails here as it would for a user, and the install
needs no network and takes a second instead of a minute of downloads.
"""

from __future__ import annotations

import email.parser
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from conftest import kill_marked, need, pid_alive, wait_for
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from stoker import __version__
from stoker.client import Client

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "src" / "stoker" / "api" / "dashboard"


def run(*args: str | Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def copy_of_the_tree(to: Path) -> Path:
    """What `make dist` reads: the Makefile, pyproject.toml, README.md (the long description)
    and src/ (without build leftovers)."""
    to.mkdir()
    for name in ("Makefile", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, to / name)
    shutil.copytree(ROOT / "src", to / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return to


def build_wheel(tree: Path) -> Path:
    make = need("make")
    # -o: the venv of the copy is taken as made; BIN: the pip of the test's venv builds
    bin_dir = Path(sys.executable).parent
    built = run(make, "-o", ".venv/.runtime", "dist", f"BIN={bin_dir}", cwd=tree)
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = (tree / "dist").glob("stoker-*.whl")
    return wheel


def declared_closure(requires: list[str]) -> list[metadata.Distribution]:
    """The installed distributions that `requires` (Requires-Dist lines, no extras asked for)
    pull in, recursively, with the extras each requirement names."""
    found: dict[str, metadata.Distribution] = {}
    todo = [(Requirement(line), frozenset({""})) for line in requires]
    while todo:
        req, extras = todo.pop()
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in extras):
            continue
        key = canonicalize_name(req.name)
        if key in found:
            continue
        dist = metadata.distribution(req.name)
        assert dist.version in req.specifier or not req.specifier, f"{req} but {dist.version} is installed"
        found[key] = dist
        wanted = frozenset({"", *req.extras})
        todo.extend((Requirement(line), wanted) for line in dist.requires or [])
    return list(found.values())


def link_dependencies(dists: list[metadata.Distribution], into: Path) -> None:
    """A site folder holding links to these distributions' top-level modules and metadata."""
    into.mkdir()
    for dist in dists:
        for file in dist.files or []:
            top = file.parts[0]
            if top in ("..", "__pycache__") or (into / top).exists():
                continue
            source = Path(str(dist.locate_file(top)))
            if source.exists():
                (into / top).symlink_to(source)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the built wheel installed; its bin folder."""
    base = tmp_path_factory.mktemp("install")
    wheel = build_wheel(copy_of_the_tree(base / "tree"))
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = email.parser.Parser().parsestr(z.read(f"stoker-{__version__}.dist-info/METADATA").decode())
    # the dashboard's files travel in the wheel (package data), every one of them
    shipped = {Path(n).name for n in names if n.startswith("stoker/api/dashboard/")}
    assert {
        p.name for p in DASHBOARD.iterdir() if p.suffix in (".html", ".js", ".css", ".LICENSE")
    } <= shipped
    assert "postgres" in meta.get_all("Provides-Extra", [])  # pip install 'stoker[postgres]'

    venv = base / "venv"
    made = run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=base)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    [site] = run(
        python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=base
    ).stdout.split()
    link_dependencies(declared_closure(meta.get_all("Requires-Dist", [])), base / "deps")
    (Path(site) / "stoker-test-deps.pth").write_text(f"{base / 'deps'}\n")
    added = run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index", wheel, cwd=base)  # fmt: skip
    assert added.returncode == 0, added.stdout + added.stderr
    return venv / "bin"


def test_the_wheel_installs_a_working_stoker(installed: Path, tmp_path: Path) -> None:
    stoker = installed / "stoker"
    version = run(stoker, "--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"stoker, version {__version__}"
    where = run(installed / "python", "-c", "import stoker; print(stoker.__file__)", cwd=tmp_path)
    assert where.stdout.startswith(str(installed.parent)), where  # the wheel's copy, not src/
    # so that what the daemon serves below shows it runs the installed files
    marker = b"<!-- installed from the wheel -->\n"
    with open(Path(where.stdout.strip()).parent / "api" / "dashboard" / "index.html", "ab") as f:
        f.write(marker)

    example = ROOT / "examples" / "demo" / "stoker.toml"
    checked = run(stoker, "-c", example, "check", cwd=tmp_path)
    assert checked.returncode == 0 and checked.stdout.startswith(f"{example}: ok"), checked

    config = tmp_path / "stoker.toml"
    config.write_text(
        textwrap.dedent(
            """
            [programs.sleeper]
            command = ["sleep", "300"]
            start_seconds = 0

            [tasks.hello]
            command = ["echo", "hello {who}"]
            """
        )
    )
    state_dir = tmp_path / ".stoker"
    client = Client(socket_path=state_dir / "stoker.sock", timeout=30)
    pid = None
    try:
        up = run(stoker, "-c", config, "up", "-d", cwd=tmp_path, timeout=60)
        assert up.returncode == 0, up.stdout + up.stderr
        pid = client.status()["pid"]
        wait_for(lambda: client.programs("sleeper")[0]["state"] == "running", what="sleeper to run")
        job = run(stoker, "-c", config, "enqueue", "hello", "who=wheel", "--wait", "--json", cwd=tmp_path)
        assert job.returncode == 0 and json.loads(job.stdout)["output"] == "hello wheel\n", job
        # the dashboard, served from the installed package's files (the marker is in that copy only)
        assert client.text("/") == (DASHBOARD / "index.html").read_bytes() + marker
        assert client.text("/dashboard/main.js") == (DASHBOARD / "main.js").read_bytes()
        assert client.text("/dashboard/style.css") == (DASHBOARD / "style.css").read_bytes()
        down = run(stoker, "-c", config, "down", cwd=tmp_path, timeout=60)
        assert down.returncode == 0, down.stdout + down.stderr
        wait_for(lambda: not pid_alive(pid), what="the daemon to exit")
    finally:
        if pid is not None and pid_alive(pid):
            os.kill(pid, 9)
        assert not kill_marked(str(state_dir))


# the Makefile's stamps ------------------------------------------------------------------------


def dry_run(tree: Path, target: str) -> str:
    made = run(need("make"), "-n", target, cwd=tree)
    assert made.returncode == 0, made.stderr
    return made.stdout


def test_make_demo_installs_the_runtime_only_and_make_test_the_dev_tools(tmp_path: Path) -> None:
    tree = copy_of_the_tree(tmp_path / "tree")
    runtime, dev = "pip install --quiet -e .\n", "pip install --quiet -e '.[dev]'"
    fresh = dry_run(tree, "demo")
    assert runtime in fresh and dev not in fresh
    fresh = dry_run(tree, "lint")  # (what `make test` runs first)
    assert dev in fresh and "touch .venv/.installed .venv/.runtime" in fresh  # the dev install has both

    venv = tree / ".venv"
    venv.mkdir()
    older = (tree / "pyproject.toml").stat().st_mtime + 1
    stamp(venv / ".runtime", older)  # after `make demo`: `make test` adds the dev tools
    assert runtime not in dry_run(tree, "demo")
    assert dev in dry_run(tree, "lint")

    stamp(venv / ".installed", older)  # after `make test` (which stamped both): nothing to install
    assert "pip install" not in dry_run(tree, "demo") and "pip install" not in dry_run(tree, "lint")

    os.utime(tree / "pyproject.toml", (older + 1, older + 1))  # changed: each reinstalls what it needs
    assert runtime in dry_run(tree, "demo") and dev in dry_run(tree, "lint")


def stamp(path: Path, mtime: float) -> None:
    path.touch()
    os.utime(path, (mtime, mtime))
