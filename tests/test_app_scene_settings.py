"""The Plan page's settings that belong to a scene stay with it over scene switches (its
guardrail margin, its learned high level) and the agent plans with them; the status line
speaks of a margin only where a hard term is in force; a long expression can be read in
full (real Streamlit server, Debian's chromium)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from webpage import WAIT, click, expect, go, open_plan, pick, shot, step_text

from app.serve import CHROMIUM, wait_idle
from scenes.push import BEHIND_BLOCK

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]
BOUND = "calibrated bound (miss rate 0.05"


def switch_scene(page, scene: str) -> None:
    """Pick ``scene`` in the sidebar, once its shipped model plans."""
    wait_idle(page)
    pick(page, "Scene", scene.capitalize())
    planning = page.get_by_text(re.compile(f"^Planning on .*{scene}-state"))
    expect(planning).to_be_visible(timeout=WAIT)
    expect(step_text(page, 0)).to_be_visible(timeout=WAIT)


def margin_box(page):
    return page.get_by_role("combobox", name="Guardrail margin")


def test_each_scene_keeps_its_margin_and_the_status_names_it_only_over_hard_terms(lab):
    url, browser = lab
    page = open_plan(browser, url, 1800, "Scene", "Kitchen", "kitchen-state")
    status = page.locator(".st-key-plan-status")
    wait_idle(page)
    pick(page, "Guardrail margin", "calibrated, delta 0.05")
    expect(status.filter(has_text=BOUND).first).to_be_visible(timeout=WAIT)
    # Reach does not inherit Kitchen's margin: its own is still none, and its agent has none
    switch_scene(page, "reach")
    expect(margin_box(page)).to_have_value("none", timeout=WAIT)
    expect(status.filter(has_text="hard terms must hold")).to_have_count(0)
    # a margin on Reach, whose cost has no hard term: the status line promises nothing of it
    wait_idle(page)
    pick(page, "Guardrail margin", "calibrated, delta 0.1")
    expect(margin_box(page)).to_have_value("calibrated, delta 0.1", timeout=WAIT)
    click(page, "Step")
    expect(step_text(page, 1)).to_be_visible(timeout=WAIT)
    expect(status.filter(has_text="calibrated bound")).to_have_count(0)
    expect(status.filter(has_text="hard terms must hold")).to_have_count(0)
    # back on Kitchen: its margin as set, and its new agent plans with it (the status line
    # reads the agent's own settings)
    switch_scene(page, "kitchen")
    expect(margin_box(page)).to_have_value("calibrated, delta 0.05", timeout=WAIT)
    expect(status.filter(has_text=BOUND).first).to_be_visible(timeout=WAIT)
    click(page, "Step")
    expect(step_text(page, 1)).to_be_visible(timeout=WAIT)
    expect(status.filter(has_text=BOUND).first).to_be_visible()
    # the knife rule switched off: no enabled hard term, no bound spoken of
    wait_idle(page)
    on = page.get_by_role("switch", name="On", exact=True)
    page.locator("label").filter(has=on).first.click()
    expect(on.first).not_to_be_checked()
    expect(status.filter(has_text="calibrated bound")).to_have_count(0, timeout=WAIT)
    # and on again: the bound is back
    wait_idle(page)
    page.locator("label").filter(has=on).first.click()
    expect(status.filter(has_text=BOUND).first).to_be_visible(timeout=WAIT)
    # Reach kept its own margin too, and both outlive a visit to another page
    switch_scene(page, "reach")
    expect(margin_box(page)).to_have_value("calibrated, delta 0.1", timeout=WAIT)
    go(page, "Learn")
    expect(page.get_by_role("heading", name="Learn").first).to_be_visible(timeout=WAIT)
    go(page, "Plan")
    expect(step_text(page, 0).or_(step_text(page, 1))).to_be_visible(timeout=WAIT)
    expect(margin_box(page)).to_have_value("calibrated, delta 0.1", timeout=WAIT)
    switch_scene(page, "kitchen")
    expect(margin_box(page)).to_have_value("calibrated, delta 0.05", timeout=WAIT)
    shot(page, "plan-scene-margins")
    page.close()


def test_each_scene_keeps_its_high_level_and_shows_long_expressions_in_full(lab):
    url, browser = lab
    page = open_plan(browser, url, 2000, "Scene", "Wall", "wall-state")
    high = page.get_by_role("switch", name="Learned high level (hierarchy)")
    wait_idle(page)
    page.get_by_text("Learned high level (hierarchy)").click()
    expect(high).to_be_checked(timeout=WAIT)
    wall_on = page.get_by_text(re.compile(r"hierarchy: pretrained/high-wall proposes"))
    expect(wall_on).to_be_visible(timeout=WAIT)
    # Push does not inherit it: flat there, and its subgoal's expression is readable whole
    switch_scene(page, "push")
    expect(high).not_to_be_checked(timeout=WAIT)
    expect(page.get_by_text(re.compile(r"hierarchy: pretrained"))).to_have_count(0)
    full = page.get_by_text(f"behind the block in full: {BEHIND_BLOCK}", exact=True)
    expect(full).to_be_visible(timeout=WAIT)
    shot(page, "plan-push-expression")
    # back on Wall: the high level is on and the agent plans with it
    switch_scene(page, "wall")
    expect(high).to_be_checked(timeout=WAIT)
    expect(wall_on).to_be_visible(timeout=WAIT)
    click(page, "Step")
    expect(step_text(page, 1)).to_be_visible(timeout=WAIT)
    expect(page.get_by_text(re.compile("the high level's plan, decoded"))).to_be_visible(
        timeout=WAIT
    )
    page.close()


def test_the_plan_page_searches_with_icem_at_the_default_n_and_can_go_back_to_plain_cem(lab):
    """The status line names the default search (iCEM at N = 30); the three iCEM sliders
    set back to 0, 0 and 1 plan with plain CEM, and the status line says no more of them."""
    url, browser = lab
    page = browser.new_page(viewport={"width": 1400, "height": 2200})
    page.goto(url)
    expect(step_text(page, 0)).to_be_visible(timeout=WAIT)
    planning = page.get_by_text(re.compile("^Planning on .*reach-state"))
    expect(planning).to_contain_text("N=30,", timeout=WAIT)
    expect(planning).to_contain_text("noise colour β 2", timeout=WAIT)
    expect(planning).to_contain_text("rounds shrink by 1.25", timeout=WAIT)
    for label in ("Noise colour β", "Elites kept", "Rounds shrink by"):
        thumb = page.get_by_test_id("stSlider").filter(has_text=label).get_by_role("slider")
        wait_idle(page)
        thumb.focus()
        page.keyboard.press("Home")
    for said in ("noise colour", "elites kept", "rounds shrink"):
        expect(planning).not_to_contain_text(said, timeout=WAIT)
    click(page, "Step")
    expect(step_text(page, 1)).to_be_visible(timeout=WAIT)
    shot(page, "plan-plain-cem")
