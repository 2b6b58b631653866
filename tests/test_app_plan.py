"""The Plan page in a real browser: a real Streamlit server driven by Debian's chromium
(the server and its workspace: the ``lab`` fixture of tests/conftest.py).

Screenshots go to tests/artifacts/ (ignored by git) on every run.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from webpage import (  # the browser tests' shared helpers (tests/webpage.py)
    WAIT,
    choose,
    click,
    enter,
    expect,
    images_drawn,
    open_plan,
    open_popover,
    pick,
    press_inside,
    shot,
    step_text,
)

from app.serve import CHROMIUM, wait_idle

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]
ROOT = Path(__file__).resolve().parents[1]


def test_plan_runs_steps_and_shows_real_and_imagined_frames(lab):
    url, browser = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.goto(url)
    expect(step_text(page, 0)).to_be_visible(timeout=WAIT)
    found = re.search(r"[?&]plan=([\w-]+)", page.url)
    assert found, page.url  # the run id is in the URL
    run = found.group(1)
    wait_idle(page)
    page.get_by_text("Start here: what this page shows").click()  # the guide opens
    expect(page.get_by_text("Step plans once and acts")).to_be_visible()
    for n in range(1, 6):
        click(page, "Step")
        expect(step_text(page, n)).to_be_visible(timeout=20_000)
    expect(page.get_by_text("real: the scene now")).to_be_visible()
    expect(page.get_by_text(re.compile("^imagined: the chosen plan decoded"))).to_be_visible()
    images_drawn(page, 2)
    expect(page.get_by_text("chosen plan: cost per term").first).to_be_visible()
    # the shipped model's steps-to-go head, read along the plan beside the probes
    expect(page.get_by_text("steps to go (latent distance head, no labels)")).to_be_visible()
    shot(page, "plan")
    # /plan (every other page has its name as its path) finds the same agent
    page.goto(f"{url}/plan?plan={run}")
    expect(step_text(page, 5)).to_be_visible(timeout=WAIT)
    expect(page.get_by_text("Page not found")).to_have_count(0)
    expect(page).to_have_url(re.compile(rf"[?&]plan={re.escape(run)}"))
    # the scene as it is after 5 steps becomes the goal: the episode starts again and the
    # agent, which was there 5 steps in, gets there again
    click(page, "Goal: this")
    expect(step_text(page, 0)).to_be_visible(timeout=20_000)
    click(page, "Run")
    status = page.locator(".st-key-plan-status")
    expect(status.get_by_text(re.compile("goal reached"))).to_be_visible(timeout=WAIT)
    reached = int(re.search(r"step (\d+)", status.inner_text()).group(1))
    assert reached <= 12, status.inner_text()
    # a click on the plane picks the goal there (the star moves, the episode starts again)
    click(page, "Pause")
    click(page, "Reset")  # the seeded goal, from the start
    expect(step_text(page, 0)).to_be_visible(timeout=20_000)
    wait_idle(page)

    def to_goal() -> str:
        return re.search(r"distance to goal ([\d.]+)", status.inner_text()).group(1)

    before = to_goal()
    plane = page.locator(".nsewdrag").first.bounding_box()
    at = (plane["x"] + 0.75 * plane["width"], plane["y"] + 0.25 * plane["height"])
    page.mouse.move(*at)
    page.mouse.click(*at)
    # the same start, another goal: another distance to it
    expect(status).not_to_have_text(re.compile(rf"distance to goal {re.escape(before)}\b"))
    assert to_goal() != before
    page.close()


def test_cost_edit_shows_the_error_and_keeps_planning_then_applies_the_fix(lab):
    url, browser = lab
    page = open_plan(browser, url, 1800, "Scene", "Kitchen", "kitchen-state")
    click(page, "Add term")
    # the new row, not the preset's (.last is the first box until the rerun draws it)
    expect(page.get_by_label("Expression")).to_have_count(2)
    expr = page.get_by_label("Expression").last
    enter(page, expr, "relu(hand_speed - ")
    error = page.get_by_test_id("stAlertContentError").get_by_text(re.compile("column 5: syntax"))
    expect(error).to_be_visible(timeout=20_000)
    expect(page.get_by_text("The term is left out until it compiles.")).to_be_visible()
    # the agent keeps planning (and acting) with the cost it had
    click(page, "Step")
    expect(step_text(page, 1)).to_be_visible(timeout=20_000)
    # (during a fragment rerun the old copy can linger for a moment: filter by content)
    costs = page.locator(".st-key-plan-costs")
    expect(costs.filter(has_text="slow near person").first).to_be_visible()
    expect(costs.filter(has_text="term 2")).to_have_count(0)
    shot(page, "plan-cost-error")
    # what the user typed is shown as typed, not as Markdown (no bold __import__)
    enter(page, expr, "__import__('os')")
    alert = page.get_by_test_id("stAlertContentError")
    expect(alert.get_by_text("unknown function '__import__'")).to_be_visible(timeout=20_000)
    enter(page, expr, "relu(hand_speed - 0.1) * 10")
    expect(error).to_have_count(0, timeout=20_000)
    expect(costs.filter(has_text="term 2").first).to_be_visible(timeout=20_000)
    shot(page, "plan-cost-fixed")
    # room for the model's error: the agent is rebuilt with the margin and says so
    status = page.locator(".st-key-plan-status")
    expect(status.filter(has_text="the model's error")).to_have_count(0)
    wait_idle(page)
    pick(page, "Guardrail margin", "x measured RMSE")
    margin = status.filter(has_text="hard terms must hold within ±1 x the model's measured error")
    expect(margin.first).to_be_visible(timeout=20_000)
    click(page, "Step")
    expect(step_text(page, 2)).to_be_visible(timeout=20_000)
    # a reloaded tab finds the agent and shows the cost it plans with, not a preset
    page.reload()
    expect(page.locator(".st-key-plan-costs").filter(has_text="term 2").first).to_be_visible(
        timeout=WAIT
    )
    # (a loaded machine can take seconds more to draw the editor's text boxes)
    expect(page.get_by_label("Expression").last).to_have_value(
        "relu(hand_speed - 0.1) * 10", timeout=WAIT
    )
    expect(page.get_by_label("Expression")).to_have_count(2)
    expect(margin.first).to_be_visible()
    thumb = page.get_by_test_id("stSlider").filter(has_text="probe RMSE").get_by_role("slider")
    expect(thumb).to_have_value("1")
    # the calibrated bound: the page says what it promises, and on what data
    wait_idle(page)
    pick(page, "Guardrail margin", "calibrated, delta 0.05")
    bound = status.filter(has_text="calibrated bound (miss rate 0.05")
    expect(bound.first).to_be_visible(timeout=20_000)
    expect(
        page.get_by_text(re.compile(r"measured on 60 of this agent's own episodes"))
    ).to_be_visible()
    # the margin on some signals only: the agent is rebuilt and the status names them
    covers = page.get_by_test_id("stMultiSelect").filter(has_text="The margin covers").first
    expect(covers).to_be_visible()
    expect(status.filter(has_text=" only")).to_have_count(0)
    wait_idle(page)
    covers.locator("input").click()
    page.keyboard.press("Backspace")  # the last signal's tag goes
    page.keyboard.press("Escape")  # a multiselect's list stays open, hiding the page
    expect(
        status.filter(has_text=re.compile(r"calibrated bound .* on \w+(, \w+)* only")).first
    ).to_be_visible(timeout=20_000)
    page.close()


@pytest.mark.skipif(
    not (ROOT / "pretrained" / "reach-pixels" / "config.json").exists(),
    reason="pretrained/reach-pixels is made by ./lab pretrain --obs pixels",
)
def test_plan_with_the_pixel_model_and_switch_a_term_to_hard(lab):
    url, browser = lab
    ckpt = "pretrained/reach-pixels (pixels, step 1000)"
    page = open_plan(browser, url, 1600, "World model", ckpt, "reach-pixels")
    for n in (1, 2):  # the second step sees the first one's frame and action
        click(page, "Step")
        expect(step_text(page, n)).to_be_visible(timeout=20_000)
    images_drawn(page, 2)
    # A term switched from soft to hard gets a limit of 0, not its old weight.
    click(page, "Add term")
    wait_idle(page)
    choose(page, page.get_by_label("Kind").last, "hard")
    expect(page.get_by_label("Limit").last).to_have_value("0", timeout=20_000)
    expr = page.get_by_label("Expression").last
    enter(page, expr, "speed - 0.3")
    costs = page.locator(".st-key-plan-costs")
    applied = costs.filter(has_text=re.compile(r"term \d [-\d.e+]+ \(hard"))
    expect(applied.first).to_be_visible(timeout=20_000)  # the agent plans with it
    # A saved cost set is offered by "Load" at once.
    open_popover(page, "Save this cost set", page.get_by_placeholder("my guardrails"))
    page.get_by_placeholder("my guardrails").fill("slow disc")
    page.get_by_placeholder("my guardrails").press("Enter")
    press_inside(page, page.get_by_role("button", name="Save", exact=True))
    expect(page.get_by_text(re.compile("^saved to .*slow disc.json"))).to_be_visible(timeout=20_000)
    page.keyboard.press("Escape")
    wait_idle(page)
    page.get_by_role("button", name="Load a cost set").click()
    expect(page.get_by_role("button", name="saved: slow disc", exact=True)).to_be_visible()
    shot(page, "plan-pixels")
    page.close()


def test_an_ended_episode_says_so_once_and_offers_the_next(lab):
    url, browser = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.goto(url)
    expect(step_text(page, 0)).to_be_visible(timeout=WAIT)
    click(page, "Run")  # Reach, the task alone: the goal is reached in a few dozen steps
    status = page.locator(".st-key-plan-status")
    expect(status.get_by_text(re.compile("episode over.*goal reached"))).to_be_visible(timeout=WAIT)
    captions = page.get_by_test_id("stCaptionContainer")
    expect(captions.get_by_text("goal reached")).to_have_count(0)  # said once, above
    step = page.get_by_role("button", name="Step", exact=True)
    expect(step).to_be_disabled()
    expect(page.get_by_role("button", name="Run", exact=True)).to_be_disabled()
    click(page, "New episode")
    expect(step_text(page, 0)).to_be_visible(timeout=20_000)
    expect(step).to_be_enabled(timeout=1_000)  # drawn in the same rerun as the status
    page.close()


def test_two_browser_sessions_plan_independently(lab):
    url, browser = lab
    a, b = browser.new_context(), browser.new_context()
    pa, pb = a.new_page(), b.new_page()
    pa.goto(url)
    pb.goto(url)
    expect(step_text(pa, 0)).to_be_visible(timeout=WAIT)
    expect(step_text(pb, 0)).to_be_visible(timeout=WAIT)
    run_a = re.search(r"plan=([\w-]+)", pa.url).group(1)
    run_b = re.search(r"plan=([\w-]+)", pb.url).group(1)
    assert run_a != run_b
    for n in (1, 2):
        click(pa, "Step")
        expect(step_text(pa, n)).to_be_visible(timeout=20_000)
    click(pb, "Step")
    expect(step_text(pb, 1)).to_be_visible(timeout=20_000)
    time.sleep(1)
    expect(step_text(pa, 2)).to_be_visible()  # a did not move with b
    a.close()
    b.close()


def test_every_load_path_puts_its_cost_set_in_force_and_leaves_the_page_whole(lab, tmp_path):
    url, browser = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    page.goto(url)  # Reach, "task only"
    expect(step_text(page, 0)).to_be_visible(timeout=WAIT)
    costs = page.locator(".st-key-plan-costs")
    click(page, "Add term")
    enter(page, page.get_by_label("Expression").last, "relu(speed - 0.5)")
    expect(costs.filter(has_text="term 1").first).to_be_visible(timeout=20_000)
    # the lab's own download ...
    wait_idle(page)
    with page.expect_download() as got:
        page.get_by_role("button", name="Download JSON").click()
    mine = tmp_path / "reach-costs.json"
    got.value.save_as(mine)
    assert "relu(speed - 0.5)" in mine.read_text()
    # ... and saved in the workspace (saved path, below)
    name = page.get_by_placeholder("my guardrails")
    open_popover(page, "Save this cost set", name)
    name.fill("speed cap")
    name.press("Enter")
    press_inside(page, page.get_by_role("button", name="Save", exact=True))
    expect(page.get_by_text(re.compile("^saved to .*speed cap.json"))).to_be_visible(timeout=20_000)
    page.keyboard.press("Escape")
    # ... a preset replaces the term (preset path) ...
    open_popover(page, "Load a cost set", page.get_by_role("button", name="task only"))
    press_inside(page, page.get_by_role("button", name="task only", exact=True))
    expect(costs.filter(has_text="term 1")).to_have_count(0, timeout=20_000)
    expect(page.get_by_label("Expression")).to_have_count(0)
    # ... and the downloaded file brings it back (file path), the page whole below it
    uploader = page.get_by_test_id("stFileUploaderDropzoneInput")  # hidden; its zone shows
    zone = page.get_by_test_id("stFileUploaderDropzone")
    open_popover(page, "Load a cost set", zone)
    uploader.set_input_files(str(mine))
    press_inside(page, page.get_by_role("button", name="Load the file"))
    expect(costs.filter(has_text="term 1").first).to_be_visible(timeout=20_000)
    expect(page.get_by_label("Expression")).to_have_value("relu(speed - 0.5)")
    expect(page.get_by_role("button", name="Save this cost set")).to_be_visible()
    expect(page.get_by_role("button", name="Download JSON")).to_be_visible()
    expect(page.get_by_text("Episode video")).to_be_visible()
    shot(page, "plan-loaded-file")  # no exception on the page
    page.keyboard.press("Escape")
    # the saved set, after the preset again took the term away
    open_popover(page, "Load a cost set", page.get_by_role("button", name="task only"))
    press_inside(page, page.get_by_role("button", name="task only", exact=True))
    expect(costs.filter(has_text="term 1")).to_have_count(0, timeout=20_000)
    saved = page.get_by_role("button", name="saved: speed cap", exact=True)
    open_popover(page, "Load a cost set", saved)
    press_inside(page, saved)
    expect(costs.filter(has_text="term 1").first).to_be_visible(timeout=20_000)
    expect(page.get_by_label("Expression")).to_have_value("relu(speed - 0.5)")
    # a malformed term: which term, which field, what it should be; nothing lost
    page.keyboard.press("Escape")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "lab-costs", "version": 1, "terms": [{"name": 5}]}))
    open_popover(page, "Load a cost set", zone)
    uploader.set_input_files(str(bad))
    press_inside(page, page.get_by_role("button", name="Load the file"))
    message = "bad.json: term 1: 'name' must be text, not a number (5)"
    expect(page.get_by_text(message)).to_be_visible(timeout=20_000)
    expect(page.get_by_text("__init__")).to_have_count(0)
    expect(page.get_by_label("Expression")).to_have_value("relu(speed - 0.5)")
    shot(page, "plan-malformed-file")
    page.close()


def test_a_rule_switched_off_stays_plotted_real_against_imagined(lab):
    url, browser = lab
    page = open_plan(browser, url, 2200, "Scene", "Kitchen", "kitchen-state")
    wait_idle(page)
    switch = page.get_by_role("switch", name="On", exact=True).first  # the knife rule's
    page.locator("label").filter(has=switch).click()  # off (Learn's first exercise)
    expect(switch).not_to_be_checked()
    expect(page.get_by_text(re.compile("slow near person.*off: shown, not counted"))).to_be_visible(
        timeout=20_000
    )
    for n in (1, 2, 3):
        click(page, "Step")
        expect(step_text(page, n)).to_be_visible(timeout=20_000)
    charts = page.locator(".js-plotly-plot")
    # both signals the rule reads, imagined and real, though the agent no longer plans with it
    signals = charts.filter(has_text="imagined 1 step ahead").filter(has_text="dist_hand_person")
    expect(signals.filter(has_text="hand_speed").first).to_be_visible(timeout=20_000)
    guard = charts.filter(has_text="guardrails: predicted vs real").first
    expect(guard).to_contain_text("off: measured, not planned with")
    expect(guard).not_to_contain_text("predicted violation")  # nothing predicted: no entry
    shot(page, "plan-rule-off")
    page.close()


@pytest.mark.skipif(
    not (ROOT / "pretrained" / "policy-reach" / "policy.json").exists(),
    reason="pretrained/policy-reach is made by ./lab pretrain",
)
def test_plan_switches_to_system_1_and_shows_the_planner_beside_it(lab):
    url, browser = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    page.goto(url)
    expect(step_text(page, 0)).to_be_visible(timeout=WAIT)
    wait_idle(page)
    page.get_by_text("System 1: the policy reacts").click()
    status = page.locator(".st-key-plan-status")
    expect(status.get_by_text(re.compile(r"policy \d+\.\d+ ms \(System 1\)"))).to_be_visible(
        timeout=20_000
    )
    for n in (1, 2):
        click(page, "Step")
        expect(step_text(page, n)).to_be_visible(timeout=20_000)
    traj = page.locator(".js-plotly-plot").filter(has_text="the policy's path (acted on)")
    expect(traj.first).to_contain_text("the planner's choice (not acted on)")
    shot(page, "plan-system-1")
    page.get_by_text("both: the policy's proposal joins the search").click()
    expect(status.get_by_text(re.compile(r"plan \d+ ms \(policy \+ planner\)"))).to_be_visible(
        timeout=20_000
    )
    click(page, "Step")
    expect(step_text(page, 3)).to_be_visible(timeout=20_000)
    page.close()


@pytest.mark.skipif(
    not (ROOT / "pretrained" / "high-wall" / "high.json").exists(),
    reason="pretrained/high-wall is made by ./lab pretrain",
)
def test_plan_turns_the_learned_high_level_on_and_draws_its_plan(lab):
    url, browser = lab
    page = open_plan(browser, url, 2000, "Scene", "Wall", "wall-state")
    wait_idle(page)
    page.get_by_text("Learned high level (hierarchy)").click()
    expect(page.get_by_text(re.compile(r"hierarchy: pretrained/high-wall proposes"))).to_be_visible(
        timeout=WAIT
    )
    click(page, "Step")
    expect(step_text(page, 1)).to_be_visible(timeout=WAIT)
    traj = page.locator(".js-plotly-plot").filter(has_text="subgoal (low level's goal)")
    expect(traj.first).to_contain_text("high level's plan")
    expect(page.get_by_text(re.compile("the high level's plan, decoded"))).to_be_visible()
    shot(page, "plan-hierarchy")
    page.get_by_text("Learned high level (hierarchy)").click()  # and off again: flat
    expect(page.get_by_text(re.compile(r"hierarchy: pretrained"))).to_have_count(0, timeout=WAIT)
    page.close()


@pytest.mark.skipif(
    not (ROOT / "pretrained" / "occluded-memory" / "config.json").exists(),
    reason="pretrained/occluded-memory is made by ./lab pretrain --scenes occluded",
)
def test_a_model_with_memory_shows_its_belief_and_surprise_behind_the_screen(lab):
    url, browser = lab
    page = open_plan(browser, url, 2200, "Scene", "Occluded", "occluded-")
    pick(page, "World model", "pretrained/occluded-memory (pixels, step 6000)")
    expect(page.get_by_text(re.compile("^Planning on .*occluded-memory"))).to_be_visible(
        timeout=WAIT
    )
    for n in (1, 2, 3):
        click(page, "Step")
        expect(step_text(page, n)).to_be_visible(timeout=20_000)
    surprise = page.locator(".st-key-plan-surprise")
    expect(surprise.get_by_text(re.compile(r"^Surprise: [\d.e+-]+ now"))).to_be_visible(
        timeout=20_000
    )
    expect(page.get_by_text(re.compile("^This model has a memory"))).to_be_visible()
    # on the plane, the person and where the model's belief puts them (its probes)
    expect(page.get_by_text("person, where the model believes").first).to_be_attached()
    shot(page, "plan-memory")
    page.close()
