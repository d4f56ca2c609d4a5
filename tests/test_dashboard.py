"""The dashboard in a real browser (Debian's chromium, driven by Playwright) on a real daemon.

One daemon and one browser serve the whole module; each test opens a fresh browser context (a
new tab: empty sessionStorage) and signs in with the token. Nothing here sleeps: Playwright's
expect() waits for what the page shows, with a deadline. The screenshots the tests take are
the docs' (README.md and docs/dashboard.md): `make screenshots` writes them to docs/screenshots/ (STOKER_SCREENSHOTS=DIR);
a plain test run keeps them in its temp dir, so running the tests leaves the tree clean.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import Stoker, free_port, need
from playwright.sync_api import Browser, Page, expect, sync_playwright

PY = sys.executable
TOKEN = "dashboard-test-token"
SHOTS_TO = os.environ.get("STOKER_SCREENSHOTS")
TICKER = "import itertools, time\nfor i in itertools.count():\n    print(f'tick {i}', flush=True)\n    time.sleep(0.2)\n"
GREET = "import sys, time\nprint('hello', sys.argv[1], flush=True)\ntime.sleep(1.5)\n"
CHECK_DISK = (
    "import sys\nprint('checking disk')\nprint('disk full: 100% used', file=sys.stderr)\nsys.exit(3)\n"
)

expect.set_options(timeout=15_000)  # a shared 2-core machine: generous, never a fixed wait


@dataclass
class Site:
    stoker: Stoker
    url: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("dashboard")
    stoker = Stoker(root)
    port = free_port()
    (root / "ticker.py").write_text(TICKER)
    (root / "greet.py").write_text(GREET)
    (root / "check_disk.py").write_text(CHECK_DISK)
    (root / "token").write_text(TOKEN + "\n")
    stoker.write(
        f"""
        [daemon]
        listen = "127.0.0.1:{port}"
        token = "file:token"

        [programs.ticker]
        command = ["{PY}", "ticker.py"]
        start_seconds = "1s"
        [programs.worker]
        command = "sleep 1000"
        instances = 2

        [tasks.greet]
        command = ["{PY}", "greet.py", "{{name}}"]
        queue = "fast"
        [tasks.check_disk]
        command = ["{PY}", "check_disk.py"]
        max_attempts = 2
        backoff = {{ min = "100ms", max = "100ms" }}
        [tasks.send_mail]
        command = ["true"]
        queue = "mail"
        [tasks.build]
        command = ["{PY}", "-c", "import sys; print(sys.argv[1:])", "{{package}}", "--channel={{channel}}",
                   "{{count}}", "--debug={{debug}}"]
        queue = "fast"
        [tasks.build.params.package]
        pattern = "^[a-z][a-z0-9_.]{{1,100}}$"
        description = "the Android package name"
        [tasks.build.params.channel]
        choices = ["android", "ios"]
        default = "android"
        [tasks.build.params.count]
        type = "int"
        min = 1
        max = 50
        [tasks.build.params.debug]
        type = "bool"
        default = false

        [queues.fast]
        concurrency = 2
        [queues.mail]
        concurrency = 4

        [schedules.nightly]
        cron = "0 3 * * *"
        timezone = "UTC"
        task = "greet"
        params = {{ name = "night" }}
        [schedules.gray]
        every = "1s"
        command = ["true"]
        when_file = "flags/gray_release"
        """
    )
    try:
        stoker.up()
        yield Site(stoker, f"http://127.0.0.1:{port}/")
    finally:
        leftovers = stoker.cleanup()
        assert not leftovers, f"processes survived the daemon: {leftovers}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = need("chromium")  # Debian's; Playwright's own browser builds are never downloaded
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def open_page(browser: Browser, site: Site) -> Iterator[Any]:
    """open_page(**context options) → a page in a new context; every context is closed after,
    and a script error on any page fails the test."""
    contexts = []
    errors: list[str] = []

    def open_page(**options: Any) -> Page:
        context = browser.new_context(timezone_id="UTC", **options)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert not errors, f"script errors on the page: {errors}"


@pytest.fixture
def page(open_page: Any) -> Page:
    result: Page = open_page(viewport={"width": 1200, "height": 760})
    return result


def sign_in(page: Page, site: Site, hash: str = "") -> None:
    page.goto(site.url + hash)
    page.get_by_label("Token").fill(TOKEN)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#live")).to_have_attribute("data-state", "live")  # events are flowing
    page.evaluate("window.sameDocument = true")  # gone if anything reloads the page


def still_same_document(page: Page) -> bool:
    return bool(page.evaluate("window.sameDocument === true"))


def shot(page: Page, name: str) -> None:
    folder = Path(SHOTS_TO) if SHOTS_TO else Path(tempfile.gettempdir()) / "stoker-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / name), full_page=True)


def state_of(page: Page, row: str) -> Any:
    return page.locator(f"tr[data-name='{row}'] .state")


# ---------------------------------------------------------------------------------------------


def test_sign_in_with_the_token(page: Page, site: Site) -> None:
    requests: list[Any] = []
    page.on("request", lambda request: requests.append(request))
    page.goto(site.url)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Token").fill("not-the-token")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#login-error")).to_have_text("The daemon did not accept that token.")
    shot(page, "sign-in.png")

    page.get_by_label("Token").fill(TOKEN)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", name="Programs")).to_be_visible()
    expect(page.locator("#live")).to_have_text("live")
    # Kept for this tab only, sent in a header, never in a URL; no cookie at all.
    assert page.evaluate("sessionStorage.getItem('stoker.token')") == TOKEN
    assert page.context.cookies() == []
    assert not [r.url for r in requests if TOKEN in r.url]
    api_calls = [r for r in requests if "/api/v1/" in r.url]
    authorized = {
        r.url.split("/api/v1/")[1].split("?")[0]
        for r in api_calls
        if r.all_headers().get("authorization") == f"Bearer {TOKEN}"
    }
    assert {"status", "programs", "events"} <= authorized

    page.reload()  # the same tab keeps its token
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('stoker.token')") is None


def test_restart_a_program_and_watch_its_state_change_live(page: Page, site: Site) -> None:
    sign_in(page, site)
    ticker = page.locator("tr[data-name='ticker:0']")
    expect(state_of(page, "ticker:0")).to_have_text("running")
    for row in ("worker:0", "worker:1"):
        expect(state_of(page, row)).to_have_text("running")
    pid = ticker.locator("td[data-label='PID']").inner_text()
    assert pid.isdigit()

    page.get_by_role("button", name="Restart ticker:0", exact=True).click()
    # The restart answers once the program has run start_seconds again: "starting" can only
    # have come from the event stream.
    expect(state_of(page, "ticker:0")).to_have_text("starting")
    expect(state_of(page, "ticker:0")).to_have_text("running")
    expect(ticker.locator("td[data-label='PID']")).not_to_have_text(pid)
    expect(ticker.locator("td[data-label='Restarts']")).to_have_text("1")
    expect(page.locator("#notice")).to_have_text("Restarted ticker:0")

    # A change made elsewhere (the CLI) shows too.
    assert site.stoker.cli("stop", "worker").returncode == 0
    for row in ("worker:0", "worker:1"):
        expect(state_of(page, row)).to_have_text("stopped")
    expect(page.locator("tr[data-name='worker:0'] .note")).to_have_text("stopped by hand")
    page.get_by_role("button", name="Start every instance of worker", exact=True).click()
    for row in ("worker:0", "worker:1"):
        expect(state_of(page, row)).to_have_text("running")
    expect(page.locator("tr[data-name='worker:0'] td[data-label='Memory']")).to_have_text(
        re.compile(r"\d+(\.\d)? [KMG]?B")
    )
    expect(page.locator("tr[data-name='worker:0'] td[data-label='CPU']")).to_have_text(
        re.compile(r"\d+\.\d%|—")
    )
    shot(page, "programs.png")
    assert still_same_document(page)


def test_a_crash_loop_shows_in_the_programs_view(page: Page, site: Site) -> None:
    """Issue 22: a program that starts fine and dies soon after looked healthy (running, its
    restarts climbing). Its second crash is a crash loop: it waits in backoff, and says so."""
    stoker = site.stoker
    original = stoker.config.read_text()
    flaky = (
        '[programs.flaky]\ncommand = ["sh", "-c", "sleep 0.3; echo db: Connection refused >&2; exit 1"]\n'
        'start_seconds = "0.1s"\n'
    )
    stoker.config.write_text(original + "\n" + flaky + 'backoff = { min = "30s", max = "60s" }\n')
    try:
        assert stoker.cli("reload").returncode == 0
        sign_in(page, site)
        expect(state_of(page, "flaky:0")).to_have_text("backoff")
        note = page.locator("tr[data-name='flaky:0'] .note")
        # Why (issue 19): the exit, and the program's last line; and when it tries again.
        expect(note).to_have_text(
            re.compile(
                r"^crash loop: 2 exits in 0\.\d\ds · exited with code 1 after 0\.\d\ds: db: Connection refused"
                r" · next try \d\d:\d\d:\d\d$"
            )
        )
    finally:
        stoker.config.write_text(original)
        assert stoker.cli("reload").returncode == 0


def test_a_program_log_follows(page: Page, site: Site) -> None:
    sign_in(page, site)
    page.get_by_role("button", name="Logs of ticker:0", exact=True).click()
    expect(page.get_by_role("heading", name="Output of ticker:0")).to_be_visible()
    output = page.get_by_label("Program output")
    expect(output).to_contain_text("tick")
    seen = output.inner_text()
    expect(output).not_to_have_text(seen)  # a line the ticker printed after the tail was read
    assert output.inner_text().startswith(seen.strip().splitlines()[0])  # appended, not replaced
    page.get_by_role("button", name="Close", exact=True).click()
    expect(output).to_be_hidden()


def test_enqueue_a_job_from_the_form_and_watch_it_succeed(page: Page, site: Site) -> None:
    sign_in(page, site)
    page.get_by_role("link", name="Jobs").click()
    page.get_by_text("Enqueue a job").click()
    form = page.get_by_role("form", name="Enqueue a job")
    form.get_by_label("Task", exact=True).select_option("greet")
    # Markup in a parameter is text to the page, never HTML.
    form.get_by_label("name", exact=True).fill("<b>world</b>")
    form.get_by_role("button", name="Enqueue", exact=True).click()

    expect(page.get_by_role("heading", name=re.compile(r"^Job #\d+$"))).to_be_visible()
    state = page.locator(".job-state")
    output = page.get_by_label("Job output")
    expect(state).to_have_text("running")
    expect(output).to_have_text("hello <b>world</b>")  # followed while it runs
    expect(state).to_have_text("succeeded")
    expect(page.locator("table.params td")).to_have_text("<b>world</b>")
    expect(page.locator("table.attempts tbody tr")).to_have_count(1)
    expect(page.locator("table.attempts tbody .state")).to_have_text("succeeded")
    assert page.locator("#views b").count() == 0
    job_id = int(page.get_by_role("heading", name=re.compile(r"^Job #")).inner_text().removeprefix("Job #"))
    assert site.stoker.client.job(job_id)["params"] == {"name": "<b>world</b>"}
    shot(page, "job.png")
    assert still_same_document(page)


def test_open_a_failed_job_and_read_its_error_output(page: Page, site: Site) -> None:
    sign_in(page, site, "#/jobs")
    page.get_by_role("form", name="Filter jobs").get_by_label("State").select_option("failed")
    job = site.stoker.client.enqueue("check_disk")
    row = page.locator(f"tr[data-id='{job.id}']")
    expect(row.locator(".state")).to_have_text("failed")  # it joins the filtered list live
    expect(row.locator("td[data-label='Error']")).to_have_text("exited with code 3: disk full: 100% used")
    shot(page, "jobs.png")
    row.get_by_role("link", name=f"#{job.id}").click()

    expect(page.get_by_label("Error text")).to_have_text("exited with code 3: disk full: 100% used")
    expect(page.get_by_label("Job output")).to_have_text("checking disk\ndisk full: 100% used")
    attempts = page.locator("table.attempts tbody tr")
    expect(attempts).to_have_count(2)
    expect(attempts.locator(".state")).to_have_text(["failed", "failed"])
    expect(page.get_by_role("button", name="Cancel", exact=True)).to_be_hidden()
    shot(page, "failed-job.png")
    page.get_by_role("button", name="Retry", exact=True).click()
    expect(page.locator("#notice")).to_have_text(f"Queued again: job #{job.id}")
    expect(page.locator(".job-state")).to_have_text("failed")
    assert site.stoker.client.wait(job.id, timeout=20)["state"] == "failed"


def test_pause_a_queue(page: Page, site: Site) -> None:
    sign_in(page, site, "#/queues")
    row = page.locator("tr[data-name='mail']")
    expect(row.locator(".state")).to_have_text("active")
    page.get_by_role("button", name="Pause queue mail", exact=True).click()
    expect(row.locator(".state")).to_have_text("paused")
    assert {q["name"]: q["paused"] for q in site.stoker.client.queues()}["mail"] is True

    job = site.stoker.client.enqueue("send_mail")
    expect(row.locator("td[data-label='Queued']")).to_have_text("1")  # live: it waits
    shot(page, "queues.png")
    page.get_by_role("button", name="Resume queue mail", exact=True).click()
    expect(row.locator(".state")).to_have_text("active")
    expect(row.locator("td[data-label='Queued']")).to_have_text("0")
    expect(row.locator("td[data-label='Done/min']")).to_have_text("1")
    assert site.stoker.client.wait(job.id, timeout=20)["state"] == "succeeded"


def test_schedules_run_now_and_pause(page: Page, site: Site) -> None:
    sign_in(page, site, "#/schedules")
    row = page.locator("tr[data-name='nightly']")
    expect(row.locator("td[data-label='Trigger']")).to_have_text("cron 0 3 * * * (UTC)")
    expect(row.locator("td[data-label='Next run']")).to_contain_text("03:00")
    page.get_by_role("button", name="Run nightly now", exact=True).click()
    expect(page.locator("#notice")).to_have_text(re.compile(r"^Queued job #\d+ of schedule nightly$"))
    job_id = int(re.findall(r"#(\d+)", page.locator("#notice").inner_text())[0])
    result = row.locator("td[data-label='Last result']")
    expect(result.get_by_role("link", name=f"#{job_id}")).to_be_visible()
    expect(result.locator(".state")).to_have_text("succeeded")
    page.get_by_role("button", name="Pause schedule nightly", exact=True).click()
    expect(row.locator("td[data-label='Next run']")).to_have_text("paused")
    shot(page, "schedules.png")
    page.get_by_role("button", name="Resume schedule nightly", exact=True).click()
    expect(row.locator("td[data-label='Next run']")).to_contain_text("03:00")


def test_a_skipped_slot_shows_why_and_the_history_tells_runs_apart(page: Page, site: Site) -> None:
    sign_in(page, site, "#/schedules")
    row = page.locator("tr[data-name='gray']")
    expect(row.locator("td[data-label='Trigger']")).to_have_text("every 1s while flags/gray_release exists")
    result = row.locator("td[data-label='Last result']")
    expect(result.locator(".state")).to_have_text("skipped")
    expect(result).to_contain_text("when_file flags/gray_release is absent")
    expect(result.get_by_role("link")).to_have_count(0)  # no job: nothing ran
    row.get_by_role("link", name="gray", exact=True).click()
    history = page.get_by_role("region", name="History of gray")
    expect(history).to_be_visible()
    slots = history.locator("table.slots tbody tr")
    expect(slots.first.locator(".state")).to_have_text("skipped")
    expect(slots.first.locator("td[data-label='Reason']")).to_have_text(
        "when_file flags/gray_release is absent"
    )
    expect(slots.first.locator("td[data-label='Job']")).to_have_text("—")
    # a run now: the history shows it, with its job, among the skipped slots (live)
    page.get_by_role("button", name="Run gray now", exact=True).click()
    run = history.locator("table.slots tbody tr", has=page.get_by_role("link", name=re.compile(r"^#\d+$")))
    expect(run.locator(".state")).to_have_text("succeeded")
    page.goto(site.url + "#/schedules/nosuch")
    expect(page.get_by_role("region", name="History of nosuch")).to_contain_text("no schedule 'nosuch'")


def test_a_schedules_own_task_and_queue_stay_out_of_the_form_and_queues(page: Page, site: Site) -> None:
    sign_in(page, site, "#/jobs")
    page.get_by_text("Enqueue a job").click()
    options = (
        page.get_by_role("form", name="Enqueue a job").get_by_label("Task", exact=True).locator("option")
    )
    expect(options).to_have_count(4)
    assert sorted(options.all_inner_texts()) == ["build (queue fast)", "check_disk (queue default)",
                                                 "greet (queue fast)", "send_mail (queue mail)"]  # fmt: skip
    # the filter lists it: its jobs are listed under that name
    choices = page.get_by_role("form", name="Filter jobs").get_by_label("Task").locator("option")
    expect(choices).to_have_count(6)
    assert choices.all_inner_texts() == ["any", "greet", "check_disk", "send_mail", "build", "schedule.gray"]
    page.get_by_role("link", name="Queues").click()
    expect(page.locator("tr[data-name='mail']")).to_be_visible()
    names = page.locator("table.queues tbody tr").evaluate_all("rows => rows.map(r => r.dataset.name)")
    assert sorted(names) == ["default", "fast", "mail"]


def test_readable_on_a_phone(open_page: Any, site: Site) -> None:
    phone = open_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    sign_in(phone, site)
    expect(state_of(phone, "ticker:0")).to_be_visible()
    expect(phone.locator("table.programs thead")).to_be_hidden()  # rows are cards, cells labelled
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(phone, "phone.png")


def test_programs_on_a_phone_compact_cards_and_a_state_filter(open_page: Any, site: Site) -> None:
    """Issue 19: an instance card took ~540 px of a phone's height (a labelled line per figure);
    now its figures share a line or two. The state filter narrows the list to what needs a look."""
    phone = open_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    sign_in(phone, site)
    for name in ("ticker:0", "worker:0", "worker:1"):
        expect(state_of(phone, name)).to_have_text("running")
    card = phone.locator("tr[data-name='worker:0']")
    box = card.bounding_box()
    assert box is not None and box["height"] < 200, box  # a compact card
    assert box["width"] <= 390
    for label in ("PID", "Uptime", "Memory"):
        expect(card.locator(f"td[data-label='{label}']")).to_be_visible()
    expect(card.get_by_role("button", name="Restart worker:0", exact=True)).to_be_visible()
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    expect(phone.locator("tbody[data-program='worker'] .program-row")).to_contain_text(
        "2 instances: 2 running"
    )
    shot(phone, "phone-programs.png")

    assert site.stoker.cli("stop", "worker:1").returncode == 0
    try:
        expect(phone.locator("tbody[data-program='worker'] .program-row")).to_contain_text(
            "2 instances: 1 running, 1 stopped"
        )
        phone.get_by_label("State").select_option("not running")
        expect(phone.locator("tr[data-name='worker:1']")).to_be_visible()
        expect(phone.locator("tr[data-name='worker:0']")).to_be_hidden()
        expect(phone.locator("tr[data-name='ticker:0']")).to_be_hidden()
        expect(phone.locator("tbody[data-program='ticker']")).to_be_hidden()  # nothing of it to show
        expect(phone.get_by_text(re.compile(r"^1 of \d+ instances$"))).to_be_visible()
        # a change that leaves the filter's states: the row goes
        phone.get_by_role("button", name="Start worker:1", exact=True).click()
        expect(phone.locator("tr[data-name='worker:1']")).to_be_hidden()
        phone.get_by_label("State").select_option("running")
        expect(phone.locator("tr[data-name='worker:1']")).to_be_visible()
        phone.get_by_label("State").select_option("")
        expect(phone.locator("tr[data-name='ticker:0']")).to_be_visible()
    finally:
        assert site.stoker.cli("start", "worker:1").returncode == 0


def test_the_jobs_list_on_a_phone_shows_when_and_how_long(open_page: Any, site: Site) -> None:
    phone = open_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    sign_in(phone, site, "#/jobs")
    job = site.stoker.client.enqueue("greet", {"name": "phone"})
    row = phone.locator(f"tr[data-id='{job.id}']")
    expect(row.locator(".state")).to_have_text("succeeded")
    expect(row.locator("td[data-label='Took']")).to_have_text(re.compile(r"^\d\.\ds$"))  # it sleeps 1.5 s
    expect(row.locator("td[data-label='Finished']")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d$"))
    expect(row.locator("td[data-label='Finished']")).to_have_attribute(
        "title",
        re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"),  # the date, on a long press / hover
    )
    later = site.stoker.client.enqueue("greet", {"name": "later"}, delay="1h")
    try:
        expect(phone.locator(f"tr[data-id='{later.id}'] td[data-label='Took']")).to_have_text(
            re.compile(r"^due in (59m \d\ds|1h 00m)$")
        )
    finally:
        site.stoker.client.cancel(later.id)
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_another_nodes_programs_show_read_only_and_lapse(
    browser: Browser, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Two daemons on one PostgreSQL: a's dashboard shows b's programs under b, without buttons,
    filters by node, and marks b lapsed once b is killed."""
    a, b = Stoker(tmp_path_factory.mktemp("node-a")), Stoker(tmp_path_factory.mktemp("node-b"))
    port = free_port()
    cluster = f'store = "{postgres_url}"\nnode_timeout = "3s"'
    a.write(f'[daemon]\nnode = "web-a"\nlisten = "127.0.0.1:{port}"\n{cluster}\n'
            '[programs.api]\ncommand = "sleep 300"\n')  # fmt: skip
    b.write(f'[daemon]\nnode = "web-b"\n{cluster}\n'
            '[programs.mailer]\ncommand = "sleep 300"\ninstances = 2\n')  # fmt: skip
    context = browser.new_context(timezone_id="UTC", viewport={"width": 1200, "height": 760})
    errors: list[str] = []
    try:
        a.up()
        b.up()
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"http://127.0.0.1:{port}/")  # loopback without [daemon] token: the one a made
        page.get_by_label("Token").fill((a.state_dir / "token").read_text().strip())
        page.get_by_role("button", name="Sign in", exact=True).click()
        mailer = page.locator("tr[data-node='web-b'][data-name='mailer:1']")
        expect(mailer.locator(".state")).to_have_text("running")
        expect(mailer).to_contain_text("read-only · web-b")
        expect(mailer.get_by_role("button")).to_have_count(0)  # no start, stop, restart or logs
        api = page.locator("tr[data-node='web-a'][data-name='api:0']")
        expect(api.locator(".state")).to_have_text("running")
        expect(page.get_by_role("button", name="Restart api:0", exact=True)).to_be_visible()
        expect(page.locator("tbody.node-head[data-node='web-a']")).to_contain_text("this node")
        expect(page.locator("tbody.node-head[data-node='web-b']")).to_contain_text("heard from")

        page.get_by_label("Node").select_option("web-b")
        expect(api).to_be_hidden()
        expect(mailer).to_be_visible()
        shot(page, "nodes.png")
        page.get_by_label("Node").select_option("")
        expect(api).to_be_visible()

        assert b.cli("stop", "mailer:0").returncode == 0  # a change on b: a's page sees it
        expect(page.locator("tr[data-node='web-b'][data-name='mailer:0'] .state")).to_have_text("stopped")
        b.kill()  # SIGKILL: b lapses once node_timeout passes, and the page says so
        expect(page.locator("tbody.node-head[data-node='web-b'] .lapsed")).to_contain_text(
            "lapsed: silent for"
        )
        expect(page.get_by_role("button", name="Restart api:0", exact=True)).to_be_enabled()
    finally:
        context.close()
        b.cleanup()
        leftovers = a.cleanup()
        assert not leftovers
    assert not errors, f"script errors on the page: {errors}"


def test_a_typed_form_and_a_refusal_beside_its_field(page: Page, site: Site) -> None:
    sign_in(page, site)
    page.get_by_role("link", name="Jobs").click()
    page.get_by_text("Enqueue a job").click()
    form = page.get_by_role("form", name="Enqueue a job")
    form.get_by_label("Task", exact=True).select_option("build")
    package = form.get_by_label("package", exact=True)
    channel = form.get_by_label("channel (optional)", exact=True)
    count = form.get_by_label("count", exact=True)
    debug = form.get_by_label("debug (optional)", exact=True)
    expect(channel).to_have_js_property("tagName", "SELECT")
    expect(channel.locator("option")).to_have_text(["android", "ios"])
    expect(count).to_have_attribute("type", "number")
    expect(count).to_have_attribute("min", "1")
    expect(debug).to_have_attribute("type", "checkbox")
    expect(form.get_by_text("the Android package name")).to_be_visible()

    before = [j["id"] for j in site.stoker.client.jobs(limit=1000)]
    package.fill("--upload-pack=touch /tmp/pwned")
    count.fill("3")
    form.get_by_role("button", name="Enqueue", exact=True).click()
    beside = page.locator("#param-error-package")
    expect(beside).to_contain_text("'package'")
    expect(beside).to_contain_text("does not match the pattern")
    expect(package).to_have_attribute("aria-invalid", "true")
    expect(package).to_have_attribute("aria-describedby", "param-error-package")
    expect(form.locator(":scope > p.error")).to_be_empty()  # the form's own error line stays empty
    shot(page, "enqueue-refused.png")
    assert [j["id"] for j in site.stoker.client.jobs(limit=1000)] == before

    package.fill("com.example.app")
    channel.select_option("ios")
    debug.check()
    form.get_by_role("button", name="Enqueue", exact=True).click()
    expect(page.locator(".job-state")).to_have_text("succeeded")
    job_id = int(page.get_by_role("heading", name=re.compile(r"^Job #")).inner_text().removeprefix("Job #"))
    job = site.stoker.client.job(job_id)
    assert job["params"] == {"package": "com.example.app", "channel": "ios", "count": 3, "debug": True}
    assert "['com.example.app', '--channel=ios', '3', '--debug=true']" in job["output"]
    assert still_same_document(page)
