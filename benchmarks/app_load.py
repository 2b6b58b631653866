"""A class on one server: Plan pages stepping at once, in real browsers.

    ./lab bench app_load [--quick] [--sessions 5] [--steps 12] [--think 1.0]

One Streamlit server (started as ``./lab`` starts it: torch's own thread
count), one headless chromium with a browser context per person. First one
person alone, then ``--sessions`` people together, in the same run; each opens
the Plan page (Reach, shipped checkpoint, CEM N=300, H=16, 3 iterations),
waits for its agent, then presses Step ``--steps`` times with ``--think``
seconds between an answer and the next press, as a person reading the page.

Figures per phase: ``page_load_s`` (open -> the agent's first status line),
``step_ms_p50`` / ``step_ms_p95`` (click -> the step counter moves on), and
the plan time the agents report, and the cores kept busy by the server and
by the whole machine. The pages are checked every 50 ms (``textContent``: no
layout), not on every animation frame, to leave the cores to the browsers'
real work; still, five headless chromiums share the server's two cores, and
where the machine is saturated while the server is not, the figures measure
the browsers, not the server (a class's browsers run on their own machines).
Goals (five people on one server once waited a median 9.8 s per Step): with 5
sessions, p50 <= 3x the single session's, p95 <= 5 s, page load <= 10 s. Last line:
one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.serve import CHROMIUM, CHROMIUM_ARGS, LabServer  # noqa: E402
from common.results import save  # noqa: E402

STATUS = ".st-key-plan-status"
STEP_TIMEOUT_MS = 120_000


async def wait_step(page, n: int, timeout: float) -> None:
    """Until the status line says ``step n``."""
    await page.wait_for_function(
        """([sel, n]) => [...document.querySelectorAll(sel)]
            .some(e => e.textContent.trim().startsWith(`step ${n} ·`))""",
        arg=[STATUS, n],
        polling=50,
        timeout=timeout,
    )


async def person(browser, url: str, steps: int, think: float, start_at: float) -> dict:
    """One browser session: open Plan, then Step ``steps`` times. Returns its timings."""
    ctx = await browser.new_context(viewport={"width": 1400, "height": 1600})
    page = await ctx.new_page()
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    t0 = time.perf_counter()
    await page.goto(url)
    await wait_step(page, 0, STEP_TIMEOUT_MS)
    load_s = time.perf_counter() - t0
    step_ms, plan_ms, failed = [], [], 0
    step = page.get_by_role("button", name="Step", exact=True)
    for n in range(1, steps + 1):
        await asyncio.sleep(think)
        await step.wait_for(state="visible")
        t0 = time.perf_counter()
        await step.click()
        try:
            await wait_step(page, n, STEP_TIMEOUT_MS)
        except Exception:  # a lost answer counts as a failure, and the person stops
            failed += 1
            break
        step_ms.append((time.perf_counter() - t0) * 1e3)
        text = await page.locator(STATUS).last.inner_text()
        found = re.search(r"plan (\d+) ms", text)
        if found:
            plan_ms.append(float(found.group(1)))
    await ctx.close()
    return {"load_s": load_s, "step_ms": step_ms, "plan_ms": plan_ms, "failed": failed}


async def phase(browser, url: str, sessions: int, steps: int, think: float) -> dict:
    """``sessions`` people at once (their page opens 0.2 s apart, as a class's would)."""
    now = time.monotonic()
    people = await asyncio.gather(
        *(person(browser, url, steps, think, now + 0.2 * i) for i in range(sessions))
    )
    for i, p in enumerate(people):
        print(
            f"  person {i + 1}/{sessions}: load {p['load_s']:.1f} s, steps (ms) "
            + " ".join(f"{ms:.0f}" for ms in p["step_ms"]),
            flush=True,
        )
    step = np.array([ms for p in people for ms in p["step_ms"]])
    plan = np.array([ms for p in people for ms in p["plan_ms"]])
    return {
        "sessions": sessions,
        "steps": int(step.size),
        "failed": sum(p["failed"] for p in people),
        "step_ms_p50": round(float(np.median(step)), 1) if step.size else None,
        "step_ms_p95": round(float(np.percentile(step, 95)), 1) if step.size else None,
        "plan_ms_p50": round(float(np.median(plan)), 1) if plan.size else None,
        "page_load_s": [round(p["load_s"], 2) for p in people],
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float:
    """CPU seconds every core of the machine spent busy (not idle or waiting on I/O)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


async def run(args) -> list[dict]:
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory() as home:
        server = LabServer(home=home, omp_threads=None, log=args.log)
        with server as url:
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                # warm the server (imports, first checkpoint load): phase 1 is not a cold start
                await phase(browser, url, 1, 1, 0.0)
                results = []
                for n in (1, args.sessions):
                    cpu0, all0 = cpu_seconds(server.proc.pid), machine_cpu_seconds()
                    t0 = time.monotonic()
                    r = await phase(browser, url, n, args.steps, args.think)
                    wall = time.monotonic() - t0
                    # cores kept busy on average: by the server, and by everything (the
                    # browsers and their driver are nearly all the rest)
                    r["server_cores"] = round((cpu_seconds(server.proc.pid) - cpu0) / wall, 2)
                    r["machine_cores"] = round((machine_cpu_seconds() - all0) / wall, 2)
                    results.append(r)
                await browser.close()
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 sessions, 4 steps each")
    ap.add_argument("--sessions", type=int, default=5)
    ap.add_argument("--steps", type=int, default=12, help="Step presses per person")
    ap.add_argument("--think", type=float, default=1.0, help="seconds between presses")
    ap.add_argument("--log", default=None, help="write the server's log here")
    args = ap.parse_args()
    if args.quick:
        args.sessions, args.steps = min(args.sessions, 3), min(args.steps, 4)
    one, many = asyncio.run(run(args))
    for r in (one, many):
        print(
            f"{r['sessions']} session(s): step p50 {r['step_ms_p50']} ms, p95 "
            f"{r['step_ms_p95']} ms over {r['steps']} steps ({r['failed']} lost); "
            f"plan {r['plan_ms_p50']} ms; page load {r['page_load_s']} s; cores busy: server "
            f"{r['server_cores']}, machine {r['machine_cores']} of {os.cpu_count()}"
        )
    ratio = many["step_ms_p50"] / one["step_ms_p50"] if one["step_ms_p50"] else None
    print(
        f"p50 with {many['sessions']} / alone: {ratio:.2f} (goal <= 3); p95 "
        f"{many['step_ms_p95']} ms (goal <= 5000); page load max {max(many['page_load_s'])} s "
        "(goal <= 10)"
    )
    out_figures = {"one": one, "many": many, "p50_ratio": round(ratio, 2)}
    print(json.dumps(out_figures))
    save("app_load", out_figures, ap, args, ignore=("log",))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
