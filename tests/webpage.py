"""What the browser tests share: screenshots, clicks and picks on a Streamlit page, and
a Plan page opened on a chosen scene or model (tests/test_app*.py; not a test module)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.serve import wait_idle

sync_api = pytest.importorskip("playwright.sync_api")
expect, Timeout = sync_api.expect, sync_api.TimeoutError
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
WAIT = 60_000  # ms: a cold page loads torch and a checkpoint


def shot(page, name: str) -> None:
    """Save a screenshot, then check the page shows no Python exception."""
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    errors = page.locator("[data-testid='stException']")
    assert errors.count() == 0, errors.first.inner_text()


def step_text(page, n: int):
    return page.locator(".st-key-plan-status").get_by_text(re.compile(rf"^step {n} ·")).first


def click(page, name: str) -> None:
    """Click a button once the script is idle (a click during a rerun can race it)."""
    wait_idle(page)
    page.get_by_role("button", name=name, exact=True).click()


def pick(page, label: str, option: str) -> None:
    """Choose ``option`` in the Streamlit selectbox labelled ``label``."""
    choose(page, page.get_by_test_id("stSelectbox").filter(has_text=label).first, option)


def choose(page, box, option: str) -> None:
    """Open the selectbox ``box`` and click ``option``, opening it again if a rerun
    closed the list before the click landed (the Plan page reruns while it plans)."""
    item = page.get_by_role("option", name=option, exact=True)
    opened(page, box, lambda timeout: item.click(timeout=timeout))


def enter(page, box, text: str) -> None:
    """Type ``text`` into a text input and submit it, once it really holds it (a rerun
    that lands between the fill and the Enter can redraw the box)."""
    wait_idle(page)
    box.fill(text)
    expect(box).to_have_value(text)
    box.press("Enter")


def images_drawn(page, n: int) -> None:
    """The page's first ``n`` images have loaded and have pixels (a broken one never does).

    An image's pixels arrive after its element: checking at once races the browser's fetch.
    """
    page.wait_for_function(
        """n => {
            const im = [...document.querySelectorAll("[data-testid='stImage'] img")].slice(0, n);
            return im.length === n && im.every(i => i.complete && i.naturalWidth > 0);
        }""",
        arg=n,
        timeout=WAIT,
    )


def open_plan(browser, url: str, height: int, label: str, option: str, shown: str):
    """A new Plan page switched to another scene or model, once it plans with ``shown``."""
    page = browser.new_page(viewport={"width": 1400, "height": height})
    page.goto(url)
    expect(step_text(page, 0)).to_be_visible(timeout=WAIT)
    pick(page, label, option)
    expect(page.get_by_text(re.compile(f"^Planning on .*{shown}"))).to_be_visible(timeout=WAIT)
    expect(step_text(page, 0)).to_be_visible(timeout=WAIT)
    return page


def go(page, name: str) -> None:
    """To another page by the sidebar, in the same session (a new URL would start one)."""
    wait_idle(page)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=name, exact=True).click()


def open_popover(page, name: str, inside) -> None:
    """Open the popover button ``name`` until ``inside`` shows (a rerun from an edit can
    close one just opened)."""
    shows = lambda timeout: expect(inside).to_be_visible(timeout=timeout)  # noqa: E731
    opened(page, page.get_by_role("button", name=name), shows)


def press_inside(page, button) -> None:
    """Click ``button`` inside an open popover once the script is idle (a click during a
    rerun, an upload's own for one, can be lost). Now and then the popover is drawn past
    the page's edge (a rerun moved its opener; seen in full runs, CI's included), where
    Playwright cannot scroll to it: then the click goes to the button itself."""
    wait_idle(page)
    try:
        expect(button).to_be_in_viewport(timeout=5_000)
    except AssertionError:
        button.dispatch_event("click")
        return
    button.click()


def opened(page, opener, then) -> None:
    """Click ``opener`` once the script is idle, then ``then(timeout)`` (a check, or a
    click on what it opened) within 5 s; up to three times, for a rerun can close a list
    or a popover just opened; then ``then`` once more with Playwright's own timeout."""
    for _ in range(3):
        wait_idle(page)
        opener.click()
        try:
            then(5_000)
            return
        except (AssertionError, Timeout):
            continue
    then(None)
