"""The lab in a real browser: a real Streamlit server driven by Debian's chromium.

Screenshots of every page go to tests/artifacts/ (ignored by git) on every run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from webpage import (  # the browser tests' shared helpers (tests/webpage.py)
    WAIT,
    click,
    expect,
    pick,
    shot,
    step_text,
)

from app.serve import CHROMIUM, wait_idle

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]
ROOT = Path(__file__).resolve().parents[1]


def test_training_goes_on_after_the_tab_closes_and_is_found_by_its_run_id(lab):
    url, browser = lab
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(url + "/train")
    expect(page.get_by_role("button", name="Start training", exact=True)).to_be_visible(
        timeout=WAIT
    )
    steps = page.get_by_label("Steps", exact=True)
    steps.fill("400")
    steps.press("Enter")
    click(page, "Start training")
    progress = page.get_by_text(re.compile(r": step (\d+)/400"))
    expect(progress).to_be_visible(timeout=WAIT)
    expect(page.get_by_text(re.compile(r": step [1-9]\d*/400"))).to_be_visible(timeout=WAIT)
    shot(page, "train")
    reopen = page.url
    assert "train=" in reopen
    first = int(re.search(r"step (\d+)/", progress.inner_text()).group(1))
    ctx.close()  # the tab is gone; the run is owned by the server
    time.sleep(2)
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(reopen)
    later = page.get_by_text(re.compile(r": step (\d+)/400"))
    expect(later).to_be_visible(timeout=WAIT)
    expect(later).to_contain_text(re.compile("running|finished"))
    again = int(re.search(r"step (\d+)/", later.inner_text()).group(1))
    assert again > first
    # the form shows the run's settings, not the defaults (1500 steps)
    expect(page.get_by_label("Steps", exact=True)).to_have_value("400")
    expect(page.get_by_text("Widget with key")).to_have_count(0)  # no session-state warning
    ctx.close()


def test_scene_drives_by_hand_and_collects_data_with_a_progress_bar(lab):
    url, browser = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.goto(url + "/scene")
    expect(page.get_by_text("reach: step 0")).to_be_visible(timeout=WAIT)
    before = page.get_by_text(re.compile(r"^x = ")).first.inner_text()
    for n in (1, 2, 3):
        click(page, "→")
        expect(page.get_by_text(f"reach: step {n}")).to_be_visible(timeout=20_000)
    after = page.get_by_text(re.compile(r"^x = ")).first.inner_text()
    assert float(after.split()[2]) > float(before.split()[2])  # it moved right
    episodes = page.get_by_label("Episodes", exact=True)
    episodes.fill("20")
    episodes.press("Enter")
    name = page.get_by_label("Folder name")
    name.fill("from-the-browser")
    name.press("Enter")
    click(page, "Collect")
    expect(page.get_by_text(re.compile(r"collect reach into .*: \d+/20 episodes"))).to_be_visible(
        timeout=WAIT
    )
    expect(page.get_by_text("Done: train on it on the Train page.")).to_be_visible(timeout=120_000)
    expect(page.get_by_text(re.compile("from-the-browser"))).to_be_visible()
    shot(page, "scene-collected")
    # a reopened tab finds the collection and shows its settings, not the defaults
    found = re.search(r"[?&]collect=([\w-]+)", page.url)
    assert found, page.url
    again = browser.new_page(viewport={"width": 1400, "height": 1600})
    again.goto(f"{url}/scene?collect={found.group(1)}")
    expect(again.get_by_text("Done: train on it on the Train page.")).to_be_visible(timeout=WAIT)
    wait_idle(again)
    expect(again.get_by_label("Episodes", exact=True)).to_have_value("20", timeout=WAIT)
    expect(again.get_by_label("Folder name")).to_have_value("from-the-browser", timeout=WAIT)
    again.close()
    page.close()


def test_experiment_compares_two_designs_with_intervals(lab):
    url, browser = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.goto(url + "/experiments")
    expect(page.get_by_role("button", name="Run the experiment", exact=True)).to_be_visible(
        timeout=WAIT
    )
    episodes = page.get_by_label("Episodes per design")
    episodes.fill("2")
    episodes.press("Enter")
    click(page, "Run the experiment")
    expect(page.get_by_text(re.compile(r"/4 episodes"))).to_be_visible(timeout=WAIT)
    expect(page.get_by_text(re.compile(r"4/4 episodes · finished"))).to_be_visible(timeout=240_000)
    table = page.locator("[data-testid='stDataFrame']").first  # a rerun can show two a moment
    expect(table).to_be_visible()
    # the CSV says which design each row is and the settings that made it, by its name too
    with page.expect_download() as got:
        page.get_by_role("button", name="Download episodes CSV").click()
    name = got.value.suggested_filename
    assert re.fullmatch(r"reach-.+-vs-.+-\d{8}-\d{6}-episodes\.csv", name), name
    text = Path(got.value.path()).read_text()
    assert "# scene: reach" in text and "# planner: cem" in text and "# seed: 0" in text
    rows = [r for r in text.splitlines() if not r.startswith("#")]
    assert rows[0].startswith("design,agent,episode")
    designs = {r.split(",")[0] for r in rows[1:]}
    assert len(designs) == 2 and "model" not in designs, designs
    expect(page.get_by_role("button", name="Download summary CSV")).to_be_visible()
    shot(page, "experiments-done")
    # a reopened tab finds the results, and the form shows the run's settings
    ctx = browser.new_context()
    again = ctx.new_page()
    again.goto(page.url)
    expect(again.get_by_text(re.compile(r"4/4 episodes · finished"))).to_be_visible(timeout=WAIT)
    expect(again.get_by_label("Episodes per design")).to_have_value("2")
    expect(again.get_by_text("Widget with key")).to_have_count(0)  # no session-state warning
    ctx.close()
    page.close()


def test_app_latency_benchmark_runs(lab):
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "app_latency.py"), "--tries", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"edit_to_plan_ms_p50", "edit_to_plan_ms_p95", "step_ms_p50"} <= set(result)
    assert 0 < result["edit_to_plan_ms_p50"] <= result["edit_to_plan_ms_p95"]


def test_app_load_benchmark_runs(lab):
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "app_load.py"),
            "--quick",
            "--sessions",
            "2",
            "--steps",
            "2",
            "--think",
            "0.2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    one, many = result["one"], result["many"]
    assert (one["sessions"], many["sessions"]) == (1, 2)
    assert one["steps"] == 2 and many["steps"] == 4 and many["failed"] == 0
    assert 0 < many["step_ms_p50"] <= many["step_ms_p95"] and len(many["page_load_s"]) == 2
    assert 0 < many["server_cores"] <= many["machine_cores"]


@pytest.mark.parametrize("name", ["scene", "train", "experiments", "learn"])
def test_every_page_draws_without_an_exception(lab, name):
    url, browser = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.goto(f"{url}/{name}")
    expect(page.get_by_role("heading", name=name.capitalize()).first).to_be_visible(timeout=WAIT)
    time.sleep(1.5)
    shot(page, f"page-{name}")
    page.close()


def test_training_gives_no_time_left_before_it_has_timed_an_evaluation(lab):
    url, browser = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.goto(url + "/train")
    steps = page.get_by_label("Steps", exact=True)
    expect(steps).to_be_visible(timeout=WAIT)
    steps.fill("3000")
    steps.press("Enter")
    page.get_by_text("More settings: the loss and the model").click()
    every = page.get_by_label("Evaluate every")
    every.fill("2000")  # the first evaluation well after the page has polled
    every.press("Enter")
    expect(every).to_have_value("2000")
    click(page, "Start training")
    # the first steps' pace left out the evaluations (54 s said, 150 s taken)
    waiting = page.get_by_text(
        re.compile(r"step [1-9]\d*/3000 · running · time left known after step 2000")
    )
    expect(waiting).to_be_visible(timeout=WAIT)
    expect(page.get_by_text(re.compile(r"/3000 · running about"))).to_have_count(0)
    click(page, "Stop and save")
    expect(page.get_by_text(re.compile(r"/3000 · stopped"))).to_be_visible(timeout=WAIT)
    page.close()


@pytest.mark.skipif(
    not (ROOT / "pretrained" / "policy-kitchen" / "policy.json").exists(),
    reason="pretrained/policy-kitchen is made by ./lab pretrain",
)
def test_learn_leads_to_the_lesson_that_runs_its_claim(lab):
    url, browser = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.goto(url + "/learn")
    expect(page.get_by_text("Where a guardrail lives.")).to_be_visible(timeout=WAIT)
    expect(page.get_by_text(re.compile(r"the policy decides in 0\.045 ms"))).to_be_visible()
    for name in ("Pixels blur", "Collapse", "Open loop", "Hierarchy"):
        expect(page.get_by_role("link", name=f"Run it live: {name}")).to_be_visible()
    wait_idle(page)
    page.get_by_role("link", name="Run it live: Guardrails").click()
    expect(page.get_by_role("heading", name="Guardrails at inference time")).to_be_visible(
        timeout=WAIT
    )
    assert page.url.endswith("/lesson-guardrails")
    shot(page, "learn-to-lesson")
    page.close()


def test_a_stress_test_shows_failures_and_the_plan_page_replays_one(lab):
    url, browser = lab
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    page.goto(url + "/experiments")
    expect(page.get_by_role("button", name="Run the stress test", exact=True)).to_be_visible(
        timeout=WAIT
    )
    pick(page, "Design to stress", "saved: barely-move")
    budget = page.get_by_label("Budget (episodes)")
    budget.fill("3")  # at the default search, iCEM N = 30, one of the first three breaks it
    budget.press("Enter")
    page.get_by_text("uniform", exact=True).click()
    click(page, "Run the stress test")
    done = page.get_by_text(re.compile(r"3/3 episodes, [123] broke the rule · finished"))
    expect(done).to_be_visible(timeout=180_000)
    expect(page.locator("[data-testid='stDataFrame']").last).to_be_visible()
    shot(page, "experiments-stress")
    plan = browser.new_page(viewport={"width": 1400, "height": 1600})
    plan.goto(url)
    expect(step_text(plan, 0)).to_be_visible(timeout=WAIT)
    plan.get_by_text(re.compile(r"^Replay a stress-test failure")).click()
    click(plan, "Replay it")
    # the design is in force (its term in the chosen plan's breakdown), the episode restarted
    expect(plan.get_by_text(re.compile(r"barely move \d"))).to_be_visible(timeout=WAIT)
    expect(step_text(plan, 0)).to_be_visible(timeout=WAIT)
    wait_idle(plan)
    shot(plan, "plan-replay")
    plan.close()
    page.close()
