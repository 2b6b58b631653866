"""The Plan page's cost editor in a real browser: the guardrails a person set stay in
force over page visits, scene switches and reloads; files, presets, charts and saved
names behave as a person expects (real Streamlit server, Debian's chromium)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from webpage import (
    ARTIFACTS,
    WAIT,
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

from app.serve import CHROMIUM, LabServer, chromium, wait_idle
from scenes.kitchen import KNIFE_RULE

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A server with an empty workspace of its own (the shipped models plan)."""
    home = tmp_path_factory.mktemp("labhome")
    ARTIFACTS.mkdir(exist_ok=True)
    with LabServer(home=home, log=ARTIFACTS / "server-costs.log") as url, chromium() as browser:
        yield url, browser, home
    shutil.rmtree(home, ignore_errors=True)


def knife_rule_shown(page) -> None:
    """The editor shows Kitchen's default set: the knife rule, hard, on; task weight 1."""
    expect(page.get_by_label("Expression")).to_have_count(1, timeout=WAIT)
    expect(page.get_by_label("Expression").first).to_have_value(KNIFE_RULE)
    expect(page.get_by_label("Name", exact=True).first).to_have_value("slow near person")
    expect(page.get_by_label("Task weight")).to_have_value(re.compile(r"^1(\.0*)?$"))
    expect(page.get_by_role("switch", name="On", exact=True).first).to_be_checked()


def test_the_guardrails_stay_in_force_over_page_visits_scene_switches_and_reloads(lab):
    url, browser, _ = lab
    page = open_plan(browser, url, 1800, "Scene", "Kitchen", "kitchen-state")
    knife_rule_shown(page)
    # another page and back: the editor shows the rule, not a blank row
    go(page, "Learn")
    expect(page.get_by_role("heading", name="Learn").first).to_be_visible(timeout=WAIT)
    go(page, "Plan")
    expect(step_text(page, 0)).to_be_visible(timeout=WAIT)
    knife_rule_shown(page)
    # another scene and back: Kitchen's own set again
    wait_idle(page)
    pick(page, "Scene", "Reach")
    expect(page.get_by_text(re.compile("^Planning on .*reach-state"))).to_be_visible(timeout=WAIT)
    pick(page, "Scene", "Kitchen")
    expect(page.get_by_text(re.compile("^Planning on .*kitchen-state"))).to_be_visible(timeout=WAIT)
    expect(step_text(page, 0)).to_be_visible(timeout=WAIT)
    knife_rule_shown(page)
    # an edit: the new term joins the rule in the agent, the rule stays hard and counted
    click(page, "Add term")
    expect(page.get_by_label("Expression")).to_have_count(2)
    enter(page, page.get_by_label("Expression").last, "relu(hand_speed - 0.5)")
    costs = page.locator(".st-key-plan-costs")
    fresh = costs.filter(has_text="term 2")
    expect(fresh.first).to_be_visible(timeout=20_000)  # the agent planned with the edit
    expect(fresh.filter(has_text=re.compile(r"slow near person [-\d.e+]+ \(hard"))).to_have_count(1)
    expect(page.get_by_label("Task weight")).to_have_value(re.compile(r"^1(\.0*)?$"))
    click(page, "Step")
    expect(step_text(page, 1)).to_be_visible(timeout=20_000)
    shot(page, "plan-costs-kept")
    # a reload of the run's URL: the same set shown and in force
    page.reload()
    expect(step_text(page, 1)).to_be_visible(timeout=WAIT)
    expect(page.get_by_label("Expression")).to_have_count(2, timeout=WAIT)
    expect(page.get_by_label("Expression").first).to_have_value(KNIFE_RULE)
    expect(page.get_by_label("Expression").last).to_have_value("relu(hand_speed - 0.5)")
    kept = page.locator(".st-key-plan-costs").filter(has_text="term 2")
    hard = kept.filter(has_text=re.compile(r"slow near person [-\d.e+]+ \(hard"))
    expect(hard.first).to_be_visible(timeout=WAIT)
    page.close()


def test_a_cost_file_for_another_scene_is_refused_and_replaces_nothing(lab, tmp_path):
    url, browser, _ = lab
    page = open_plan(browser, url, 1800, "Scene", "Kitchen", "kitchen-state")
    reach = tmp_path / "reach-costs.json"
    walls = {"name": "keep off walls", "expression": "relu(0.15 - dist_wall)", "kind": "hard"}
    reach.write_text(json.dumps({"format": "lab-costs", "version": 1, "terms": [walls]}))
    zone = page.get_by_test_id("stFileUploaderDropzone")
    open_popover(page, "Load a cost set", zone)
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(reach))
    press_inside(page, page.get_by_role("button", name="Load the file"))
    # the term, the name it reads and the names Kitchen has
    refused = page.get_by_text(
        re.compile(r"reach-costs\.json: term 1 \('keep off walls'\): reads 'dist_wall'.*hand_speed")
    )
    expect(refused).to_be_visible(timeout=20_000)
    page.keyboard.press("Escape")
    knife_rule_shown(page)  # nothing replaced: the editor, and the agent
    click(page, "Step")
    expect(step_text(page, 1)).to_be_visible(timeout=20_000)
    costs = page.locator(".st-key-plan-costs")
    expect(
        costs.filter(has_text=re.compile(r"slow near person [-\d.e+]+ \(hard")).first
    ).to_be_visible()
    expect(costs.filter(has_text="keep off walls")).to_have_count(0)
    shot(page, "plan-costs-other-scene")
    page.close()


def test_a_preset_that_replaced_unsaved_terms_can_be_undone(lab):
    url, browser, _ = lab
    page = open_plan(browser, url, 1800, "Scene", "Kitchen", "kitchen-state")
    costs = page.locator(".st-key-plan-costs")
    click(page, "Add term")
    expect(page.get_by_label("Expression")).to_have_count(2)  # .last: the new row's box
    enter(page, page.get_by_label("Expression").last, "relu(hand_speed - 0.4)")
    expect(costs.filter(has_text="term 2").first).to_be_visible(timeout=20_000)
    preset = page.get_by_role("button", name="task only", exact=True)
    open_popover(page, "Load a cost set", preset)
    press_inside(page, preset)
    expect(costs.filter(has_text="term 2")).to_have_count(0, timeout=20_000)
    expect(page.get_by_label("Expression")).to_have_count(0)
    page.keyboard.press("Escape")
    click(page, "Undo: bring back the terms before the preset 'task only'")
    expect(page.get_by_label("Expression")).to_have_count(2, timeout=20_000)
    expect(page.get_by_label("Expression").first).to_have_value(KNIFE_RULE)
    expect(page.get_by_label("Expression").last).to_have_value("relu(hand_speed - 0.4)")
    back = costs.filter(has_text="term 2")  # in force again, the rule hard
    expect(
        back.filter(has_text=re.compile(r"slow near person [-\d.e+]+ \(hard")).first
    ).to_be_visible(timeout=20_000)
    expect(page.get_by_role("button", name=re.compile("^Undo"))).to_have_count(0)
    page.close()


BARS = """() => {
    const plots = [...document.querySelectorAll('.js-plotly-plot')];
    const p = plots.find(p => (p.textContent || '').includes('cost per term'));
    if (!p || !p.data) return {};
    const d = p.data[0];
    return Object.fromEntries(Array.from(d.y).map((y, i) => [y, [d.x[i], d.text[i]]]));
}"""


def term_bars(page, shown: str) -> dict:
    """The per-term chart's bars as drawn, label -> (value, text), once ``shown`` is one."""
    page.wait_for_function(f"() => ({BARS})()[{json.dumps(shown)}] !== undefined", timeout=WAIT)
    return page.evaluate(BARS)


def test_a_term_switched_off_is_not_drawn_as_counted(lab):
    url, browser, _ = lab
    page = open_plan(browser, url, 2000, "Scene", "Kitchen", "kitchen-state")
    click(page, "Add term")
    expect(page.get_by_label("Expression")).to_have_count(2)  # .last: the new row's box
    enter(page, page.get_by_label("Expression").last, "dist_hand_person")  # always > 0
    costs = page.locator(".st-key-plan-costs")
    expect(costs.filter(has_text="term 2").first).to_be_visible(timeout=20_000)
    assert term_bars(page, "term 2")["term 2"][0] > 0
    wait_idle(page)
    on = page.get_by_role("switch", name="On", exact=True)
    switch = on.last  # the new term's
    page.locator("label").filter(has=on).last.click()
    expect(switch).not_to_be_checked()
    expect(
        costs.filter(has_text=re.compile("term 2.*off: shown, not counted")).first
    ).to_be_visible(timeout=20_000)
    value, text = term_bars(page, "term 2 (off)")["term 2 (off)"]
    assert value == 0 and "not counted" in text
    shot(page, "plan-costs-off-bar")
    page.close()


def test_a_saved_cost_set_keeps_the_name_it_was_given(lab):
    url, browser, home = lab
    page = open_plan(browser, url, 1800, "Scene", "Kitchen", "kitchen-state")
    name = page.get_by_placeholder("my guardrails")
    open_popover(page, "Save this cost set", name)
    name.fill("my knife rule 0.6")
    name.press("Enter")
    save = page.get_by_role("button", name="Save", exact=True)
    press_inside(page, save)
    expect(page.get_by_text(re.compile(r"^saved to .*my knife rule 0\.6\.json"))).to_be_visible(
        timeout=20_000
    )
    saved = json.loads((home / "costs" / "my knife rule 0.6.json").read_text())
    assert saved["name"] == "my knife rule 0.6"
    page.keyboard.press("Escape")
    button = page.get_by_role("button", name="saved: my knife rule 0.6", exact=True)
    open_popover(page, "Load a cost set", button)
    press_inside(page, button)
    knife_rule_shown(page)
    page.close()


def test_kitchen_draws_no_steps_to_go_head_that_is_not_measured(lab):
    url, browser, _ = lab
    page = open_plan(browser, url, 1800, "Scene", "Kitchen", "kitchen-state")
    click(page, "Step")
    expect(step_text(page, 1)).to_be_visible(timeout=20_000)
    expect(page.get_by_text(re.compile("not measured to track progress in kitchen"))).to_be_visible(
        timeout=20_000
    )
    expect(page.get_by_text("steps to go (latent distance head, no labels)")).to_have_count(0)
    page.close()
