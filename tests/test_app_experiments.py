"""The Experiments page in a real browser: its form across page visits, and a stress test
whose failures show as they are found and download (a real server, Debian's chromium)."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
from webpage import ARTIFACTS, WAIT, expect, go, pick, shot  # tests/webpage.py

from app.serve import CHROMIUM, LabServer, chromium, wait_idle

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A server with its own workspace holding a design any motion breaks."""
    home = tmp_path_factory.mktemp("labhome")
    (home / "costs").mkdir()
    barely = '{"format": "lab-costs", "version": 1, "terms": [{"name": "barely move", '
    barely += '"expression": "relu(speed - 0.05)", "kind": "hard"}]}'
    (home / "costs" / "barely-move.json").write_text(barely)
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / "server-experiments.log"
    with LabServer(home=home, log=log) as url, chromium() as browser:
        yield url, browser
    shutil.rmtree(home, ignore_errors=True)
    assert "created with a default value" not in log.read_text()


def selectbox(page, label: str):
    """The selectbox labelled ``label``: its value is the choice shown."""
    return page.get_by_role("combobox", name=label, exact=True).first


def go_to(page, name: str) -> None:
    """To another page by the sidebar (``webpage.go``), once its heading shows."""
    go(page, name)
    expect(page.get_by_role("heading", name=name).first).to_be_visible(timeout=WAIT)
    wait_idle(page)


def test_the_form_keeps_its_settings_after_a_visit_to_another_page(lab):
    url, browser = lab
    page = browser.new_page(viewport={"width": 1400, "height": 2000})
    page.goto(url + "/experiments")
    expect(page.get_by_role("button", name="Run the experiment", exact=True)).to_be_visible(
        timeout=WAIT
    )
    pick(page, "Scene", "Wall")
    expect(selectbox(page, "World model")).to_have_value(re.compile("wall-state"), timeout=WAIT)
    wait_idle(page)
    episodes = page.get_by_label("Episodes per design")
    episodes.fill("7")
    episodes.press("Enter")
    wait_idle(page)
    pick(page, "Guardrail margin", "calibrated, delta 0.05")
    expect(page.get_by_text(re.compile(r"with probability ≥ 0\.95"))).to_be_visible(timeout=WAIT)
    wait_idle(page)
    budget = page.get_by_label("Budget (episodes)")
    budget.fill("9")
    budget.press("Enter")
    wait_idle(page)
    go_to(page, "Learn")
    go_to(page, "Experiments")
    expect(page.get_by_label("Episodes per design")).to_have_value("7", timeout=WAIT)
    expect(selectbox(page, "Scene")).to_have_value("Wall")
    expect(selectbox(page, "Guardrail margin")).to_have_value("calibrated, delta 0.05")
    expect(page.get_by_label("Budget (episodes)")).to_have_value("9")
    shot(page, "experiments-form-kept")
    # and once more, by way of the Plan page (the default page)
    go_to(page, "Plan")
    go_to(page, "Experiments")
    expect(page.get_by_label("Episodes per design")).to_have_value("7", timeout=WAIT)
    expect(selectbox(page, "Scene")).to_have_value("Wall")
    page.close()


def test_a_stress_test_shows_failures_as_they_are_found_and_downloads_them(lab):
    url, browser = lab
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    page.goto(url + "/experiments")
    expect(page.get_by_role("button", name="Run the stress test", exact=True)).to_be_visible(
        timeout=WAIT
    )
    pick(page, "Design to stress", "saved: barely-move")
    wait_idle(page)
    budget = page.get_by_label("Budget (episodes)")
    budget.fill("3")
    budget.press("Enter")
    wait_idle(page)
    page.get_by_text("uniform", exact=True).click()
    wait_idle(page)
    page.get_by_role("button", name="Run the stress test", exact=True).click()
    # a generation is 20 episodes: the count used to stay at 0/3 until it jumped to 3/3
    midway = page.get_by_text(re.compile(r"[12]/3 episodes, [0-2] broke the rule · running"))
    expect(midway).to_be_visible(timeout=300_000)
    shot(page, "experiments-stress-midway")
    done = page.get_by_text(re.compile(r"3/3 episodes, [123] broke the rule · finished"))
    expect(done).to_be_visible(timeout=400_000)
    found = int(re.search(r"(\d) broke the rule", done.inner_text()).group(1))
    expect(page.get_by_text("saved under")).to_have_count(0)  # no server path: downloads
    wait_idle(page)  # the last rerun's buttons carry the finished result
    with page.expect_download() as got:
        page.get_by_role("button", name="Download failures CSV").click()
    name = got.value.suggested_filename
    assert re.fullmatch(r"stress-barely-move-\d{8}-\d{6}-reach-random-failures\.csv", name), name
    text = Path(got.value.path()).read_text()
    assert "# scene: reach" in text and "# method: random" in text and "# budget: 3" in text
    assert f"# failures: {found}" in text
    rows = list(csv.DictReader(ln for ln in text.splitlines() if not ln.startswith("#")))
    assert len(rows) == found and all(float(r["excess"]) > 0 for r in rows)
    with page.expect_download() as got:
        page.get_by_role("button", name="Download the result JSON").click()
    result = json.loads(Path(got.value.path()).read_text())
    assert result["format"] == "lab-stress" and len(result["episodes"]) == 3
    assert result["failures"] == found
    shot(page, "experiments-stress-done")
    page.close()


def test_an_experiment_runs_each_guarded_design_with_its_margin_and_with_none(lab):
    url, browser = lab
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    page.goto(url + "/experiments")
    expect(page.get_by_role("button", name="Run the experiment", exact=True)).to_be_visible(
        timeout=WAIT
    )
    episodes = page.get_by_label("Episodes per design")
    episodes.fill("1")
    episodes.press("Enter")
    wait_idle(page)
    pick(page, "Guardrail margin", "calibrated, delta 0.05")
    wait_idle(page)
    page.get_by_text("Each guarded design also with no margin").click()
    wait_idle(page)
    page.get_by_role("button", name="Run the experiment", exact=True).click()
    done = page.get_by_text(re.compile(r"3/3 episodes · finished"))
    expect(done).to_be_visible(timeout=400_000)
    table = page.locator("[data-testid='stDataFrame']").first
    expect(table).to_be_visible()
    with page.expect_download() as got:
        page.get_by_role("button", name="Download summary CSV").click()
    text = Path(got.value.path()).read_text()
    assert "# delta: per design" in text, text[:2000]
    guarded = "hard: keep off walls · calibrated, delta 0.05"
    plain = "hard: keep off walls · no margin"
    heads = {ln.split(" guard: ")[0]: ln for ln in text.splitlines() if " guard: " in ln}
    assert "calibrated bound at miss rate 0.05" in heads[f"# design {guarded}"]
    assert "delta 0;" in heads[f"# design {plain}"]
    assert "no hard term" in heads["# design task only"]
    rows = list(csv.DictReader(ln for ln in text.splitlines() if not ln.startswith("#")))
    assert {r["design"] for r in rows} == {"task only", guarded, plain}
    assert {"no_safe_plan_rate", "violation_step_rate/keep off walls"} <= {
        r["metric"] for r in rows
    }
    shot(page, "experiments-margin-per-design")
    page.close()
