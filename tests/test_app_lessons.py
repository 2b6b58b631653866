"""The Lessons pages in a real browser, each run to its result, and a newcomer's way in:
a workspace with no data, where the Train page collects some in place. Before a run a
page says what runs and draws the shipped figures in words and percentages; the
presentation view shows them large without the sidebar; a run takes the seed chosen.

The server runs each lesson's short version (``LAB_LESSONS_QUICK=1``: fewer episodes,
shorter training); the full ones are ``./lab bench lessons``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from webpage import ARTIFACTS, WAIT, expect, open_plan, pick, shot, step_text

from app import lesson_views
from app.lesson_views import read_csv
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
    "blur": [
        "sharpness where the person walks, imagined over real, generative, h = 16",
        "probes' error in signal spreads, JEPA, h = 16",
        "share of episodes reaching the goal, generative",
    ],
    "collapse": [
        "effective rank of the latent after training, with EMA target and VICReg",
        "effective rank of the latent after training, without them",
    ],
    "guardrails": [
        "share of real steps breaking the rule, a new rule, policy (rule trained in)",
        "share of real steps breaking the rule, a new situation, planner (rule held)",
    ],
    "open_loop": [
        "share of episodes reaching the goal, replanning every step, shoved",
        "share of episodes reaching the goal, blind plan, shoved",
    ],
    "hierarchy": [
        "share of episodes reaching the goal, flat, 16 steps",
        "share of episodes reaching the goal, learned high level (HIQL subgoals)",
    ],
    "field": [
        "cost per episode (real steps breaking the rule), PPO-L trained under the old rule, "
        "new rule",
        "return per episode, planner (rule held), new rule",
    ],
    "memory": [
        "error of the person's position read from the latent, hidden, memory",
        "share of hidden steps breaking the knife rule, no memory",
    ],
}
SEED = {"open_loop": 3}  # a lesson run with a seed of its own (the others with 0)
PLANNER_NEW_RULE = "share of real steps breaking the rule, a new rule, planner (rule held)"


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
    seed = SEED.get(key, 0)
    if seed:
        box = page.get_by_label("Seed", exact=True)
        box.fill(str(seed))
        box.press("Enter")
        expect(page.get_by_text(re.compile(rf"Seed: {seed}; it chooses"))).to_be_visible()
        wait_idle(page)
    page.get_by_role("button", name=re.compile("^Run the experiment")).click()
    done = page.get_by_text(re.compile(r"· finished"))
    expect(done).to_be_visible(timeout=LESSON_WAIT)
    for name in RESULT[key]:
        expect(page.get_by_text(name, exact=True).last).to_be_visible()
    expect(page.get_by_text("What this run ran.")).to_be_visible()
    expect(page.get_by_text(re.compile(rf"Seed: {seed}; it chooses")).last).to_be_visible()
    headline = page.locator(".js-plotly-plot").first  # the claim's figures, this run's
    expect(headline).to_be_visible()
    expect(headline.locator(".gtitle")).to_contain_text(lesson.title)
    with page.expect_download() as got:
        page.get_by_role("button", name="Download the rows (CSV)").click()
    header, rows = read_csv(Path(got.value.path()).read_text())
    assert header["scene"] == lesson.scenes[0].capitalize(), header
    assert header["seed"].startswith(f"{seed};") and "episodes" in header and "rule" in header
    assert any(name in header for name in RESULT[key]), header  # the figures, in words
    columns = {c for y in lesson.chart["y"] for c in ((y,) if isinstance(y, str) else y)}
    assert rows and columns <= set(rows[0]), rows[:1]
    if key == "open_loop":  # the headline chart as a PNG, from plotly's toolbar
        assert "replanning every step" in "".join(header)
        headline.hover()
        with page.expect_download() as png:
            headline.get_by_role("button", name="Download plot as a PNG").click()
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


def test_a_lesson_says_what_runs_and_draws_the_shipped_figures_before_a_run(empty_lab):
    url, browser = empty_lab
    lesson = LESSONS["guardrails"]
    page = browser.new_page(viewport={"width": 1400, "height": 2200})
    page.goto(f"{url}/lesson-guardrails")
    expect(page.get_by_role("heading", name=lesson.title)).to_be_visible(timeout=WAIT)
    wait_idle(page)
    # what a run runs: scene, rule, the new situation, episodes, seed
    expect(page.get_by_text("What a run runs.")).to_be_visible()
    for what in ("Scene:", "Rule:", "A new situation:", "Episodes:", "Seed:"):
        expect(page.get_by_text(what, exact=True).first).to_be_visible()
    expect(page.get_by_text(re.compile("the person walking at 0.8 m/s")).first).to_be_visible()
    # the seed and, on this lesson, the scene can be chosen
    expect(page.get_by_label("Seed", exact=True)).to_have_value("0")
    expect(page.get_by_test_id("stSelectbox").filter(has_text="Scene")).to_be_visible()
    # the shipped figures, in words and percentages, and drawn, before anything runs
    expect(page.get_by_text(PLANNER_NEW_RULE, exact=True)).to_be_visible()
    tiny = lesson_views.pct(results.figures("lessons")["guardrails"]["shifted_violation_planner"])
    expect(page.get_by_role("cell", name=tiny, exact=True)).to_be_visible()
    chart = page.locator(".js-plotly-plot").first
    expect(chart).to_be_visible()
    expect(chart.locator(".gtitle")).to_contain_text(lesson.title)
    expect(chart.get_by_text(tiny, exact=True)).to_be_visible()  # the small bar's mark
    expect(chart.get_by_text(re.compile("lower is better")).first).to_be_visible()
    expect(chart.locator(".errorbar").first).to_be_attached()  # intervals on the rates
    shot(page, "lesson-guardrails-before-a-run")
    # a chosen seed stays when the page is left and found again
    box = page.get_by_label("Seed", exact=True)
    box.fill("7")
    box.press("Enter")
    expect(page.get_by_text(re.compile("Seed: 7; it chooses"))).to_be_visible()
    wait_idle(page)
    page.get_by_test_id("stSidebarNav").get_by_text("Collapse", exact=True).click()
    expect(page.get_by_role("heading", name=LESSONS["collapse"].title)).to_be_visible()
    wait_idle(page)
    page.get_by_test_id("stSidebarNav").get_by_text("Guardrails", exact=True).click()
    expect(page.get_by_label("Seed", exact=True)).to_have_value("7", timeout=WAIT)
    page.close()


def test_the_presentation_view_shows_claim_chart_and_figures_large(empty_lab):
    url, browser = empty_lab
    lesson = LESSONS["guardrails"]
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.goto(f"{url}/lesson-guardrails?present=1")
    expect(page.get_by_role("heading", name=lesson.title)).to_be_visible(timeout=WAIT)
    expect(page.get_by_text(lesson.claim)).to_be_visible()
    expect(page.locator(".js-plotly-plot").first).to_be_visible()
    expect(page.get_by_text(PLANNER_NEW_RULE, exact=True)).to_be_visible()
    expect(page.get_by_test_id("stSidebar")).to_be_hidden()
    expect(page.get_by_role("button", name=re.compile("^Run the experiment"))).to_have_count(0)
    size = page.get_by_text(lesson.claim).evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
    assert size >= 24, size  # large, for the back of the room
    shot(page, "lesson-guardrails-presentation")
    # its toggle leaves it: the sidebar and the run button come back
    wait_idle(page)
    page.get_by_text("Presentation view").click()
    expect(page.get_by_role("button", name=re.compile("^Run the experiment"))).to_be_visible(
        timeout=WAIT
    )
    expect(page.get_by_test_id("stSidebar")).to_be_visible()
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
