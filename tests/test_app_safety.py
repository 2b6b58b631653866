"""Bullet-Safety-Gym tasks in the app, in a real browser: Plan with the shipped ballcircle
model, a task driven by hand on the Scene page, a refused task, and a tiny experiment
(the server and its workspace: the ``lab`` fixture of tests/conftest.py).

These tasks have no goal: the pages must show the task's reward and cost where a goal
scene shows the distance to its goal, and no goal control at all.
Screenshots go to tests/artifacts/ (ignored by git) on every run.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from webpage import (  # the browser tests' shared helpers (tests/webpage.py)
    WAIT,
    choose,
    click,
    enter,
    expect,
    go,
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
CIRCLE = "SafetyBallCircle (Bullet-Safety-Gym)"


def test_plan_on_ballcircle_plans_on_the_reward_under_the_tasks_rule(lab):
    url, browser = lab
    page = open_plan(browser, url, 1800, "Scene", CIRCLE, "ballcircle-state")
    # the cost editor: the reward as the task term, the task's rule as a hard term
    task = page.get_by_role("combobox", name="Task term")
    expect(task).to_have_value(re.compile(r"^the task's reward \(probed, maximised"))
    expr = page.get_by_label("Expression")
    expect(expr).to_have_count(1)
    expect(expr).to_have_value("abs(x)")
    limit = page.get_by_label("Limit")
    expect(limit).to_have_value("6")
    status = page.locator(".st-key-plan-status")
    # no goal: the status line says the reward and cost, never a distance to a goal
    expect(status).not_to_have_text(re.compile("goal"))
    expect(status).to_have_text(re.compile(r"reward -?[\d.]+ · cost [\d.]+"))
    # no goal control: a goal-free task has nothing to click a goal onto
    expect(page.get_by_role("button", name="Goal: this")).to_have_count(0)
    expect(page.get_by_text("the gold ring is the goal")).to_have_count(0)
    for n in range(1, 4):
        click(page, "Step")
        expect(step_text(page, n)).to_be_visible(timeout=WAIT)
    expect(status).to_have_text(re.compile(r"return -?[\d.]+ · episode cost [\d.]+"))
    # the signals the agent plans on and its rule reads, over time: reward and x
    expect(page.get_by_text("chosen plan: cost per term").first).to_be_visible()
    costs = page.locator(".st-key-plan-costs")
    expect(costs.filter(has_text="stay inside the boundaries").first).to_be_visible()
    expect(page.get_by_text("rule: abs(x) <= 6").first).to_be_visible()  # drawn on the plane
    signals = page.locator(".st-key-plan-signals")
    expect(signals.filter(has_text="reward").first).to_be_visible(timeout=WAIT)
    shot(page, "safety-plan")
    # the rule's limit edited: the next plan holds the new one (the status line says so)
    enter(page, limit, "5")
    expect(status).to_have_text(re.compile(r"cost version [1-9]"), timeout=WAIT)
    click(page, "Step")
    expect(step_text(page, 4)).to_be_visible(timeout=WAIT)
    # the rule's lines on the plane follow the edit (their legend says the limit)
    expect(page.get_by_text("rule: abs(x) <= 5").first).to_be_visible(timeout=WAIT)
    shot(page, "safety-plan-limit")
    # a set saved on Reach (the workspace's "barely move": a signal-distance task term)
    # loads with its term and the reward as the task term: this task has no goal
    open_popover(page, "Load a cost set", page.get_by_role("button", name="saved: barely-move"))
    press_inside(page, page.get_by_role("button", name="saved: barely-move"))
    expect(expr.first).to_have_value("relu(speed - 0.05)", timeout=WAIT)
    expect(task).to_have_value(re.compile(r"^the task's reward"))
    click(page, "Step")
    expect(step_text(page, 5)).to_be_visible(timeout=WAIT)
    expect(costs.filter(has_text="barely move").first).to_be_visible(timeout=WAIT)
    shot(page, "safety-plan-loaded")
    page.close()


def test_scene_page_drives_ballrun_and_refuses_ballreach_with_a_message(lab):
    url, browser = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.goto(url)
    expect(step_text(page, 0)).to_be_visible(timeout=WAIT)
    go(page, "Scene")
    expect(page.get_by_role("heading", name="Scene")).to_be_visible(timeout=WAIT)
    pick(page, "Scene", "SafetyBallRun (Bullet-Safety-Gym)")
    expect(page.get_by_text("ballrun: step 0")).to_be_visible(timeout=WAIT)
    click(page, "→")
    expect(page.get_by_text("ballrun: step 1")).to_be_visible(timeout=WAIT)
    # the task's own figures among the signals, no goal inputs, no scripted controller
    expect(page.get_by_text(re.compile(r"^reward = "))).to_be_visible()
    expect(page.get_by_text(re.compile(r"^cost = "))).to_be_visible()
    expect(page.get_by_text("Set this goal (new episode)")).to_have_count(0)
    expect(page.get_by_role("button", name="Scripted step")).to_have_count(0)
    expect(page.get_by_text("✓")).to_have_count(0)  # nothing to succeed at
    expect(page.get_by_text(re.compile("the task has no scripted controller"))).to_be_visible()
    shot(page, "safety-scene")
    # a task the lab cannot make replay: a message, not a traceback
    pick(page, "Scene", "SafetyBallReach (Bullet-Safety-Gym)")
    alert = page.get_by_test_id("stAlertContentError")
    expect(alert.get_by_text(re.compile("cannot be made to replay"))).to_be_visible(timeout=WAIT)
    shot(page, "safety-scene-refused")  # (shot also checks no exception is shown)
    # and back to a task that runs
    pick(page, "Scene", "SafetyBallRun (Bullet-Safety-Gym)")
    expect(page.get_by_text("ballrun: step 0")).to_be_visible(timeout=WAIT)
    page.close()


def test_refused_task_on_plan_and_experiments_is_a_message(lab):
    url, browser = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.goto(url)
    expect(step_text(page, 0)).to_be_visible(timeout=WAIT)
    refused = page.get_by_test_id("stAlertContentError").get_by_text(
        re.compile(r"^SafetyBallReach \(Bullet-Safety-Gym\) is not offered: .*cannot be made to")
    )
    # Plan: the refusal, not "train a model" (no model of it can be trained)
    pick(page, "Scene", "SafetyBallReach (Bullet-Safety-Gym)")
    expect(refused).to_be_visible(timeout=WAIT)
    expect(page.get_by_text(re.compile("No world model for"))).to_have_count(0)
    shot(page, "safety-plan-refused")
    # Experiments: the same
    go(page, "Experiments")
    expect(page.get_by_role("heading", name="Experiments")).to_be_visible(timeout=WAIT)
    pick(page, "Scene", "SafetyBallReach (Bullet-Safety-Gym)")
    expect(refused).to_be_visible(timeout=WAIT)
    expect(page.get_by_text(re.compile("No world model for"))).to_have_count(0)
    shot(page, "safety-experiments-refused")
    page.close()


def test_experiment_on_ballcircle_shows_episode_return_and_cost(lab):
    url, browser = lab
    page = browser.new_page(viewport={"width": 1400, "height": 2200})
    page.goto(url)
    expect(step_text(page, 0)).to_be_visible(timeout=WAIT)
    go(page, "Experiments")
    expect(page.get_by_role("heading", name="Experiments")).to_be_visible(timeout=WAIT)
    pick(page, "Scene", CIRCLE)
    expect(page.get_by_text("pretrained/ballcircle-state").first).to_be_visible(timeout=WAIT)
    box = page.get_by_label("Episodes per design")
    enter(page, box, "1")
    # a small search: N = 30 (the slider's first stop), 1 iteration
    for label, value in (("Samples N", "30"), ("Iterations", "1")):
        thumb = page.get_by_test_id("stSlider").filter(has_text=label).get_by_role("slider")
        wait_idle(page)
        thumb.focus()
        page.keyboard.press("Home")
        expect(thumb).to_have_attribute("aria-valuetext", value, timeout=WAIT)
    # the field's trained-in baseline beside the planner's designs, on the same episode
    trained = page.get_by_test_id("stMultiSelect").filter(has_text="Trained-in designs").first
    choose(page, trained, "pretrained/ppol-ballcircle (trained 200 704 steps on the task's cost)")
    page.keyboard.press("Escape")  # a multiselect's list stays open, hiding the page
    click(page, "Run the experiment")
    done = page.get_by_text(re.compile(r"3/3 episodes · finished"))
    expect(done).to_be_visible(timeout=300_000)
    table = page.get_by_test_id("stDataFrame").first
    expect(table).to_be_visible()
    # the benchmark's own figures, beside the lab's (the grid is a canvas: read its CSV)
    with page.expect_download() as got:
        page.get_by_role("button", name="Download summary CSV").click()
    text = Path(got.value.path()).read_text()
    rows = list(csv.DictReader(ln for ln in text.splitlines() if not ln.startswith("#")))
    figures = {r["metric"]: r["value"] for r in rows if not r["design"].startswith("PPO")}
    assert float(figures["episode_return"]) > 0, text[:2000]
    ppol = {r["metric"]: r["value"] for r in rows if r["design"].startswith("PPO")}
    assert float(ppol["episode_return"]) > 300, text[:2000]  # it has learned to circle
    assert "a PPO-Lagrangian policy acts alone" in text
    assert float(figures["episode_cost"]) >= 0, text[:2000]
    expect(page.get_by_text("reached the goal")).to_have_count(0)
    shot(page, "safety-experiment")
    # a stress test searches the task's start for episodes breaking its rule
    expect(
        page.get_by_text(re.compile(r"^The search sets start_x, start_y for each"))
    ).to_be_visible()
    budget = page.get_by_label("Budget (episodes)")
    enter(page, budget, "2")
    page.get_by_text("uniform", exact=True).click()
    click(page, "Run the stress test")
    stressed = page.get_by_text(re.compile(r"2/2 episodes, \d broke the rule · finished"))
    expect(stressed).to_be_visible(timeout=300_000)
    shot(page, "safety-stress")
    # the Plan page replays a failure: its design in force, its start restored
    plan = open_plan(browser, url, 1600, "Scene", CIRCLE, "ballcircle-state")
    plan.get_by_text(re.compile(r"^Replay a stress-test failure")).click()
    click(plan, "Replay it")
    expect(step_text(plan, 0)).to_be_visible(timeout=WAIT)
    click(plan, "Step")
    expect(step_text(plan, 1)).to_be_visible(timeout=WAIT)
    costs = plan.locator(".st-key-plan-costs")
    expect(costs.filter(has_text="stay inside the boundaries").first).to_be_visible(timeout=WAIT)
    shot(plan, "safety-plan-replay")
    plan.close()
    page.close()
