"""The dashboard's charts (charts.js, uPlot) in a real browser on a real daemon: after real jobs
and a program that restarts, the charts hold the right numbers (read from the data they draw,
and from the legend that hovering shows), a new point shows without a reload, a phone's width,
the dark theme."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Stoker, free_port, need, wait_for
from playwright.sync_api import Browser, Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from test_dashboard import TOKEN, Site, shot, sign_in, still_same_document

PY = sys.executable
FLAKY = "import time\ntime.sleep(1)\nraise SystemExit(1)\n"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("charts")
    stoker = Stoker(root)
    port = free_port()
    (root / "token").write_text(TOKEN + "\n")
    (root / "flaky.py").write_text(FLAKY)
    stoker.write(
        f"""
        [daemon]
        listen = "127.0.0.1:{port}"
        token = "file:token"

        [programs.web]
        command = "sleep 1000"
        [programs.flaky]
        command = ["{PY}", "flaky.py"]
        start_seconds = 0

        [tasks.ok]
        command = ["true"]
        queue = "work"
        [tasks.bad]
        command = ["{PY}", "-c", "raise SystemExit(3)"]
        queue = "work"

        [queues.work]
        concurrency = 2
        """
    )
    try:
        stoker.up()
        for _ in range(3):
            stoker.client.enqueue("ok")
        bad = stoker.client.enqueue("bad")
        assert stoker.client.wait(bad.id, timeout=30).state == "failed"
        yield Site(stoker, f"http://127.0.0.1:{port}/")
    finally:
        leftovers = stoker.cleanup()
        assert not leftovers, f"processes survived the daemon: {leftovers}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = need("chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Any]:
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


def total(page: Page, chart: str, series: str) -> float:
    return float(
        page.evaluate(
            "([c, s]) => (window.stokerCharts[c]?.data.series[s] ?? []).reduce((a, v) => a + (v ?? 0), 0)",
            [chart, series],
        )
    )


def wait_total(page: Page, chart: str, series: str, at_least: float) -> None:
    page.wait_for_function(
        "([c, s, n]) => (window.stokerCharts[c]?.data.series[s] ?? []).reduce((a, v) => a + (v ?? 0), 0) >= n",
        arg=[chart, series, at_least],
        timeout=60_000,
    )


def hover(page: Page, chart: str, series: str) -> float:
    """Hover the latest slot of `chart` where `series` is not 0; the legend then shows its value
    (the one in the chart's data, returned). The chart may be redrawn between the look and the
    hover (a restart's event refreshes it, a new slot shifts the points): then look again."""

    def look_and_hover() -> float | None:
        index, value, x = page.evaluate(
            """([c, s]) => {
                const {data, plot} = window.stokerCharts[c];
                const values = data.series[s];
                let i = values.length - 1;
                while (i >= 0 && !values[i]) i--;
                return [i, values[i], plot.valToPos(data.times[i], "x")];
            }""",
            [chart, series],
        )
        assert index >= 0
        page.locator(f"[data-chart='{chart}']").scroll_into_view_if_needed()
        over = page.locator(f"[data-chart='{chart}'] .u-over").bounding_box()
        assert over is not None
        page.mouse.move(over["x"] + min(x, over["width"] - 1), over["y"] + over["height"] / 2, steps=3)
        row = page.locator(f"[data-chart='{chart}'] .u-legend .u-series", has_text=series)
        try:
            page.wait_for_function(
                "([c, i]) => window.stokerCharts[c].plot.cursor.idx === i", arg=[chart, index], timeout=3_000
            )
            expect(row.locator(".u-value")).to_have_text(f"{value:g}", timeout=3_000)
        except (PlaywrightTimeoutError, AssertionError):
            page.mouse.move(0, 0)  # leave the chart, then look at it afresh
            return None
        return float(value)  # (never 0: the slot was picked for it)

    value: float = wait_for(look_and_hover, 60, f"the legend of {chart} to show the hovered {series}")
    return value


def test_the_overview_holds_the_jobs_and_restarts(open_page: Any, site: Site) -> None:
    page = open_page(viewport={"width": 1200, "height": 900})
    sign_in(page, site, "#/charts")
    expect(page.get_by_role("heading", name="Charts")).to_be_visible()
    wait_total(page, "overview-jobs", "done", 3)
    assert total(page, "overview-jobs", "done") == 3
    assert total(page, "overview-jobs", "failed") == 1
    assert total(page, "queue-work", "done") == 3 and total(page, "queue-work", "failed") == 1
    assert hover(page, "overview-jobs", "done") >= 1

    # a program that restarts: in the overview and marked on its own chart
    wait_total(page, "program-flaky", "restarts", 1)
    wait_total(page, "overview-restarts", "restarts", 1)
    assert hover(page, "program-flaky", "restarts") >= 1
    page.wait_for_function(
        "() => (window.stokerCharts['program-web']?.data.series.memory ?? []).some((v) => v > 0)"
    )
    wait_total(page, "overview-running", "running", 1)
    page.wait_for_function(
        "() => (window.stokerCharts['overview-daemon']?.data.series.memory ?? []).some((v) => v > 1e7)"
    )
    shot(page, "charts.png")

    # a live point: jobs that end now show without a reload
    for _ in range(2):
        site.stoker.client.enqueue("ok")
    wait_total(page, "overview-jobs", "done", 5)
    assert still_same_document(page)

    # the ranges: 24 h of 2-minute slots hold the same jobs
    page.get_by_role("button", name="24h", exact=True).click()
    page.wait_for_function("() => window.stokerCharts['overview-jobs'].data.times.length === 720")
    assert total(page, "overview-jobs", "done") == 5


def test_charts_on_a_phone_in_the_dark(open_page: Any, site: Site) -> None:
    page = open_page(viewport={"width": 390, "height": 844}, color_scheme="dark", is_mobile=True)
    sign_in(page, site, "#/charts")
    wait_total(page, "overview-jobs", "done", 3)
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 390
    for box in [page.locator(".chart").nth(i).bounding_box() for i in range(4)]:
        assert box is not None and box["width"] <= 390
    # dark: the page's own colours, the legend readable on the dark panel
    colour = page.evaluate("getComputedStyle(document.querySelector('.u-legend')).color")
    assert colour == "rgb(230, 230, 227)"
    shot(page, "charts-phone-dark.png")
