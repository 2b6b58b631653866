"""How fast the Plan page answers, in a real browser against a real server.

    ./lab bench app_latency [--tries 20] [--scene reach]

Two figures, over ``--tries`` attempts each, on the Reach scene with the
shipped checkpoint (CEM, N=300, H=16, 3 iterations):

* edit -> plan: from pressing Enter on a changed cost expression to the page
  showing the plan made with it (the status line's cost version moves on);
* step -> frames: from clicking Step to the new step's status and frames.

The browser checks the page on every animation frame, so the figures include
the server's rerun, the plan, the websocket and the browser's drawing. Goal:
p95 of edit -> plan <= 500 ms on 2 CPU cores. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.serve import LabServer, chromium, wait_idle  # noqa: E402
from common.results import save  # noqa: E402

STATUS = ".st-key-plan-status"


def wait_status(page, pattern: str, timeout: float = 20_000) -> None:
    """Wait (checking every animation frame) until the status line matches ``pattern``."""
    page.wait_for_function(
        """([sel, pat]) => [...document.querySelectorAll(sel)]
            .some(e => new RegExp(pat).test(e.innerText))""",
        arg=[STATUS, pattern],
        polling="raf",
        timeout=timeout,
    )


def status(page) -> str:
    return page.locator(STATUS).last.inner_text()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tries", type=int, default=20)
    ap.add_argument("--scene", default="reach")
    args = ap.parse_args()
    with (
        tempfile.TemporaryDirectory() as home,
        LabServer(home=home) as url,
        chromium() as browser,
    ):
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(url)
        wait_status(page, r"^step 0 ·", timeout=90_000)
        if args.scene != "reach":
            page.get_by_label("Scene").first.click()
            page.get_by_role("option", name=args.scene.capitalize(), exact=True).click()
            page.wait_for_function(
                "s => document.body.innerText.includes(s)", arg=f"{args.scene}-state"
            )
        wait_idle(page)
        page.get_by_role("button", name="Add term", exact=True).click()
        expr = page.get_by_label("Expression").last
        expr.wait_for()
        edit_ms, step_ms = [], []
        for i in range(args.tries + 1):  # the first of each is a warm-up
            wait_idle(page)
            version = int(re.search(r"cost version (\d+)", status(page)).group(1))
            expr.fill(f"relu(speed - {0.2 + 0.01 * (i % 10):.2f}) * {1 + i % 3}")
            t0 = time.perf_counter()
            expr.press("Enter")
            wait_status(page, rf"cost version {version + 1}\b")
            if i:
                edit_ms.append((time.perf_counter() - t0) * 1e3)
            wait_idle(page)
            t = int(re.search(r"step (\d+)", status(page)).group(1))
            if t >= 60 or "episode over" in status(page):  # keep an episode going
                page.get_by_role("button", name="New episode", exact=True).click()
                wait_status(page, r"^step 0 ·")
                wait_idle(page)
                t = 0
            t0 = time.perf_counter()
            page.get_by_role("button", name="Step", exact=True).click()
            wait_status(page, rf"^step {t + 1} ·")
            if i:
                step_ms.append((time.perf_counter() - t0) * 1e3)
        found = re.search(r"plan (\d+) ms", status(page))  # not shown once an episode is over
        plan_ms = found.group(1) if found else "?"
    e, s = np.array(edit_ms), np.array(step_ms)
    print(f"scene {args.scene}, {args.tries} tries each, planning {plan_ms} ms per plan")
    print(
        f"edit -> plan on screen: p50 {np.median(e):.0f} ms, p95 {np.percentile(e, 95):.0f} ms "
        f"(goal p95 <= 500)"
    )
    print(f"step -> new frames: p50 {np.median(s):.0f} ms, p95 {np.percentile(s, 95):.0f} ms")
    result = {
        "scene": args.scene,
        "tries": args.tries,
        "edit_to_plan_ms_p50": round(float(np.median(e)), 1),
        "edit_to_plan_ms_p95": round(float(np.percentile(e, 95)), 1),
        "step_ms_p50": round(float(np.median(s)), 1),
        "step_ms_p95": round(float(np.percentile(s, 95)), 1),
    }
    print(json.dumps(result))
    save("app_latency", result, ap, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
