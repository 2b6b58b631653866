"""The Lessons pages in a real browser, each run to its result, and a newcomer's way in:
a workspace with no data, where the Train page collects some in place.

The server runs each lesson's short version (``LAB_LESSONS_QUICK=1``: fewer episodes,
shorter training); the full ones are ``./lab bench lessons``.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
from pathlib import Path

import pytest
from webpage import ARTIFACTS, WAIT, expect, open_plan, pick, shot, step_text

from app.serve import CHROMIUM, LabServer, chromium, wait_idle
from common import results
from experiments.lessons import LESSONS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]
LESSON_WAIT = 300_000  # ms: a short lesson on a busy 2-core machine
# what each lesson's result shows once it has finished
RESULT = {
    "blur": ["generative sharpness h16", "jepa probe nrmse h16", "generative success"],
    "collapse": ["rank with", "rank without"],
    "guardrails": ["new rule violation policy", "shifted violation planner"],
    "open_loop": ["receding success pushed", "open loop success pushed"],
    "hierarchy": ["flat success", "learned success"],
}


@pytest.fixture(scope="module")
def empty_lab(tmp_path_factory):
    """A server whose workspace has nothing in it yet, running the short lessons."""
    home = tmp_path_factory.mktemp("newcomer")
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / "server-lessons.log"
    with LabServer(home=home, log=log, LAB_LESSONS_QUICK=1) as url, chromium() as browser:
        yield url, browser
    shutil.rmtree(home, ignore_errors=True)


@pytest.mark.parametrize("key", list(LESSONS))
def test_a_lesson_runs_to_its_result_and_exports_it(empty_lab, key):
    url, browser = empty_lab
    lesson = LESSONS[key]
    page = browser.new_page(viewport={"width": 1400, "height": 2000}, accept_downloads=True)
    page.goto(f"{url}/lesson-{key.replace('_', '-')}")
    expect(page.get_by_role("heading", name=lesson.title)).to_be_visible(timeout=WAIT)
    expect(page.get_by_text(lesson.claim)).to_be_visible()
    if key in results.figures("lessons"):  # the shipped figures, before anything runs
        expect(page.get_by_text("Measured when the shipped checkpoints were made")).to_be_visible()
    # the navigation reaches every lesson
    nav = page.get_by_test_id("stSidebarNav")
    for other in LESSONS.values():
        expect(nav.get_by_text(other.nav, exact=True)).to_be_visible()
    wait_idle(page)
    page.get_by_role("button", name=re.compile("^Run the experiment")).click()
    done = page.get_by_text(re.compile(r"· finished"))
    expect(done).to_be_visible(timeout=LESSON_WAIT)
    for name in RESULT[key]:
        expect(page.get_by_text(name, exact=True).last).to_be_visible()
    chart = page.locator(".js-plotly-plot").last
    expect(chart).to_be_visible()
    with page.expect_download() as got:
        page.get_by_role("button", name="Download the rows (CSV)").click()
    rows = list(csv.DictReader(io.StringIO(Path(got.value.path()).read_text())))
    columns = {c for y in lesson.chart["y"] for c in ((y,) if isinstance(y, str) else y)}
    assert rows and columns <= set(rows[0]), rows[:1]
    if key == "open_loop":  # the chart itself as a PNG, from plotly's toolbar
        chart.hover()
        with page.expect_download() as png:
            chart.get_by_role("button", name="Download plot as a PNG").click()
        assert png.value.suggested_filename == "lesson-open_loop.png"
        assert Path(png.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if key == "blur":
        with page.expect_download() as png:
            page.get_by_role("button", name="Download the frames (PNG)").click()
        assert Path(png.value.path()).read_bytes()[:4] == b"\x89PNG"
    expect(page.get_by_text("What it shows.")).to_be_visible()
    expect(page.get_by_role("button", name="Deploy")).to_have_count(0)
    shot(page, f"lesson-{key}")
    page.close()


def test_the_train_page_collects_data_in_place_for_a_newcomer(empty_lab):
    url, browser = empty_lab
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.goto(f"{url}/train")
    expect(page.get_by_text(re.compile("^No data yet"))).to_be_visible(timeout=WAIT)
    episodes = page.get_by_label("Episodes")
    episodes.fill("10")
    episodes.press("Enter")
    page.get_by_text("Pixels (64x64)").click()  # states only: seconds
    wait_idle(page)
    page.get_by_role("button", name="Collect", exact=True).click()
    # once the data are in, the training form takes the panel's place
    expect(page.get_by_role("button", name="Start training")).to_be_visible(timeout=120_000)
    expect(page.get_by_role("combobox", name="Data")).to_have_value("reach (reach, 10 episodes)")
    shot(page, "train-newcomer-collected")
    page.close()


def test_the_plan_page_plans_with_the_generative_model(empty_lab):
    """The lesson's 'try next': the generative model is a world model like the others (and
    Kitchen's default stays its state model)."""
    url, browser = empty_lab
    page = open_plan(browser, url, 1600, "Scene", "Kitchen", "kitchen-state")
    wait_idle(page)
    pick(page, "World model", "pretrained/kitchen-generative (pixels, generative, step 1500)")
    expect(page.get_by_text(re.compile("^Planning on .*kitchen-generative"))).to_be_visible(
        timeout=WAIT
    )
    expect(step_text(page, 0)).to_be_visible(timeout=WAIT)
    wait_idle(page)
    page.get_by_role("button", name="Step", exact=True).click()
    expect(step_text(page, 1)).to_be_visible(timeout=WAIT)
    shot(page, "plan-generative")
    page.close()
