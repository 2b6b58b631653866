"""A class on one server: K students on the Plan page at once, without K browsers.

    ./lab bench class_load [--students 10] [--quick] [--placement thread,process,ray]
                           [--ray ADDRESS] [--browsers 1] [--scene ballrun] [--phases step,run]
                           [--samples N]

One real Streamlit server (started as ``./lab`` starts it) per placement of its
agents (``app/hosts.py``: ``thread``, the server's own threads, one at a time;
``process``, a process per agent; ``ray``, Ray actors). Each student is a
headless client that speaks the browser's own protocol to the server (the
websocket at ``/_stcore/stream``: ``BackMsg`` out, ``ForwardMsg`` in, widget
states, fragment polls at the interval the page asks for) and reads what a
person reads: the status line ``step n · ... · plan k ms · cost version v``.
It opens the Plan page (Reach, the shipped model, the page's default search),
then in phases:

* **step**: one student alone, then K together, each pressing Step every
  ``--think`` seconds after the answer, ``--steps`` times, and editing a term's
  expression once halfway (the cost version moves on): step latency p50/p95
  (click -> the status line shows the step), per student and over all;
* **run**: one alone, then K together, each pressing Run for ``--run-seconds``
  and Pause: steps served per second (the status line's step count over time).

A student whose answer never comes (120 s), whose agent stops with an error or
whose connection drops is lost. Cores kept busy by the server (its process and
its children: the agents' processes) and by the machine are measured per phase.
``--browsers B`` adds B real browsers (headless chromium) stepping beside the K
students in the step phase: their latency against the students' says whether the
headless figures are what a person sees. ``plan_threads``: plans per second per
core at 1..cores torch threads, in this process, before the servers start (why
``app.hosts.THREADS_PER_PLAN``). Goals (2 cores): 10 students stepping every
second, p95 <= 1.5 s and none lost; 20 students on Run, steps served per second
>= 0.9 x one student's alone. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

import scenes  # noqa: E402
from agents.agent import AgentConfig  # noqa: E402
from agents.build import build_agent  # noqa: E402
from agents.cost import CostSet  # noqa: E402
from agents.planners import PlannerConfig  # noqa: E402
from app.serve import CHROMIUM, CHROMIUM_ARGS, LabServer  # noqa: E402
from common.results import save  # noqa: E402
from worldmodels import compiled  # noqa: E402
from worldmodels.checkpoint import load_checkpoint  # noqa: E402

TIMEOUT_S = 120.0  # an answer later than this: the student is lost
STATUS = re.compile(r"\*\*step (\d+)\*\* · ([^·]+)·(?:.*?plan (\d+) ms)?.*?cost version (\d+)")
WIDGETS = ("button", "selectbox", "text_input", "number_input", "slider", "checkbox", "radio")


class LostError(Exception):
    """The student's session ended: no answer, an error on the page, a closed socket."""


class Student:
    """One person's browser session, spoken over the websocket (module docstring)."""

    def __init__(self, url: str, name: str) -> None:
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.WidgetStates_pb2 import WidgetState
        from websockets.sync.client import connect

        self.BackMsg, self.WidgetState = BackMsg, WidgetState
        self.name = name
        ws_url = url.replace("http://", "ws://") + "/_stcore/stream"
        self.ws = connect(ws_url, subprotocols=["streamlit"], max_size=None, open_timeout=60)
        self.cv = threading.Condition()
        self.cache: dict[str, object] = {}  # ForwardMsg hash -> message (ref_hash answers)
        self.widgets: dict[str, tuple[str, str, str, object]] = {}  # id -> kind, label, frag
        self.fragments: dict[str, float] = {}  # fragment id -> poll interval (s)
        self.next_poll: dict[str, float] = {}
        self.query = ""
        self.busy = False  # a script run under way
        self.step = -1  # the status line: step, state, plan ms, cost version
        self.state = ""
        self.plan_ms: list[float] = []
        self.cost_version = -1
        self.error = ""
        self.closed = False
        self._lock = threading.Lock()  # one sender at a time
        threading.Thread(target=self._read, daemon=True, name=f"{name}-read").start()
        threading.Thread(target=self._poll, daemon=True, name=f"{name}-poll").start()

    # --- the protocol ----------------------------------------------------------------------
    def rerun(self, fragment: str = "", states=(), auto: bool = False) -> None:
        msg = self.BackMsg()
        cs = msg.rerun_script
        cs.query_string = self.query
        cs.fragment_id = fragment
        cs.is_auto_rerun = auto
        cs.widget_states.widgets.extend(states)
        with self.cv:
            self.busy = True
        with self._lock:
            self.ws.send(msg.SerializeToString())

    def _read(self) -> None:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        try:
            for raw in self.ws:
                msg = ForwardMsg()
                msg.ParseFromString(raw)
                kind = msg.WhichOneof("type")
                if kind == "ref_hash":
                    msg, kind = (
                        self.cache[msg.ref_hash],
                        self.cache[msg.ref_hash].WhichOneof("type"),
                    )
                elif msg.hash:
                    self.cache[msg.hash] = msg
                self._take(msg, kind)
        except Exception as e:  # a dropped connection: the student is lost
            self.error = self.error or f"connection: {type(e).__name__}: {e}"
        with self.cv:
            self.closed = True
            self.cv.notify_all()

    def _take(self, msg, kind: str) -> None:
        with self.cv:
            if kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                el = msg.delta.new_element
                et = el.WhichOneof("type")
                if et in WIDGETS:
                    w = getattr(el, et)
                    self.widgets[w.id] = (et, w.label, msg.delta.fragment_id, w)
                elif et == "markdown":
                    self._status(el.markdown.body)
                elif (et == "alert" and "The agent stopped" in el.alert.body) or (
                    et == "alert" and "This agent is gone" in el.alert.body
                ):
                    self.error = el.alert.body
            elif kind == "auto_rerun":
                fid = msg.auto_rerun.fragment_id
                self.fragments[fid] = msg.auto_rerun.interval
                self.next_poll[fid] = time.monotonic() + msg.auto_rerun.interval
            elif kind == "page_info_changed":
                self.query = msg.page_info_changed.query_string
            elif kind == "script_finished":
                self.busy = False
            self.cv.notify_all()

    def _status(self, body: str) -> None:
        m = STATUS.search(body)
        if not m:
            return
        self.step, self.state = int(m.group(1)), m.group(2).strip()
        if m.group(3) is not None:
            self.plan_ms.append(float(m.group(3)))
        self.cost_version = int(m.group(4))

    def _poll(self) -> None:
        """The fragments' timers, as the browser keeps them (not while a run is under way)."""
        while not self.closed:
            time.sleep(0.05)
            now = time.monotonic()
            with self.cv:
                due = [f for f, t in self.next_poll.items() if t <= now and f in self.fragments]
                if self.busy or not due:
                    continue
                fid = due[0]
                self.next_poll[fid] = now + self.fragments[fid]
            try:
                self.rerun(fid, auto=True)
            except Exception:
                return

    # --- what a person does -------------------------------------------------------------
    def wait(self, cond, timeout: float = TIMEOUT_S) -> None:
        with self.cv:
            ok = self.cv.wait_for(lambda: cond() or self.error or self.closed, timeout)
            if self.error or self.closed or not ok:
                raise LostError(
                    self.error or ("closed" if self.closed else f"no answer in {timeout} s")
                )

    def widget(self, kind: str, label: str) -> tuple[str, str, object]:
        with self.cv:
            for wid, (et, lab, frag, w) in self.widgets.items():
                if et == kind and lab == label:
                    return wid, frag, w
        raise LostError(f"no {kind} {label!r} on the page")

    def has(self, kind: str, label: str) -> bool:
        with self.cv:
            return any(et == kind and lab == label for et, lab, _, _ in self.widgets.values())

    def press(self, label: str) -> None:
        wid, frag, _ = self.widget("button", label)
        self.rerun(frag, [self.WidgetState(id=wid, trigger_value=True)])

    def open(self, scene: str | None = None) -> float:
        """Open Plan (the default page) and wait for the agent's first status; seconds."""
        t0 = time.perf_counter()
        ready = lambda: self.step >= 0 and not self.state.startswith("starting")  # noqa: E731
        self.rerun()
        self.wait(ready)
        if scene:
            wid, frag, w = self.widget("selectbox", "Scene")
            label = next(o for o in w.options if scene in o.lower().replace(" ", ""))
            with self.cv:
                self.step = -1
            self.rerun(frag, [self.WidgetState(id=wid, string_value=label)])
            self.wait(ready)
        return time.perf_counter() - t0

    def search(self, samples: int) -> None:
        """Set the sidebar's Samples N (the agent plans with it from the next plan on)."""
        from streamlit.proto.Common_pb2 import StringArray

        wid, frag, _ = self.widget("slider", "Samples N")
        state = self.WidgetState(id=wid, string_array_value=StringArray(data=[str(samples)]))
        self.rerun(frag, [state])
        self.wait(lambda: not self.busy)

    def step_once(self) -> float:
        """Press Step; ms until the status line shows the next step."""
        want = self.step + 1
        t0 = time.perf_counter()
        self.press("Step")
        self.wait(lambda: self.step >= want)
        return (time.perf_counter() - t0) * 1e3

    def edit_term(self) -> float:
        """Edit the first term's expression (a small change; a new term's, if there is none);
        ms until the agent plans with it (the status line's cost version moves on)."""
        t0 = time.perf_counter()
        if not self.has("text_input", "Expression"):  # no term yet: add one, as a person would
            self.press("Add term")
            self.wait(lambda: self.has("text_input", "Expression"))
        wid, frag, w = self.widget("text_input", "Expression")
        before = self.cost_version
        text = w.value if w.set_value else w.default
        new = f"({text}) * 1.01" if text else "relu(speed - 0.3)"
        self.rerun(frag, [self.WidgetState(id=wid, string_value=new)])
        self.wait(lambda: self.cost_version > before)
        return (time.perf_counter() - t0) * 1e3

    def run_for(self, seconds: float) -> float:
        """Press Run and watch for ``seconds`` (an episode that ends: New episode, Run
        again, as a person would), then Pause; steps served per second."""
        t0 = time.monotonic()
        end, served, last = t0 + seconds, 0, self.step
        self.press("Run")
        self.wait(lambda: self.state.startswith("running") or self.state.startswith("episode"))
        while time.monotonic() < end:
            with self.cv:
                self.cv.wait(0.1)
                step, state = self.step, self.state
            served += step - last if step >= last else step  # a new episode counts from 0
            last = step
            if state.startswith("episode over"):
                self.press("New episode")
                self.wait(lambda: self.step == 0)
                last = 0
                self.press("Run")
                self.wait(lambda: self.state.startswith("running") or self.step > 0)
        wall = time.monotonic() - t0
        self.press("Pause")
        self.wait(lambda: not self.state.startswith("running"))
        return served / wall

    def close(self) -> None:
        self.closed = True
        self.ws.close()


def stepping(s: Student, args, out: dict) -> None:
    """A student who steps every ``think`` seconds and edits a term once halfway."""
    for n in range(args.steps):
        time.sleep(args.think)
        out["step_ms"].append(s.step_once())
        if n == args.steps // 2:
            time.sleep(args.think)
            out["edit_ms"] = s.edit_term()
    out["plan_ms"] = list(s.plan_ms)


def running(s: Student, args, out: dict) -> None:
    """A student who presses Run for a while."""
    out["steps_per_s"] = s.run_for(args.run_seconds)


def together(act, url: str, k: int, args, server, beside=None) -> tuple[list[dict], dict]:
    """``k`` students arrive 0.2 s apart (as a class's would) and open the Plan page; once
    all have it the lesson begins and each does ``act``, with ``beside()`` (real browsers)
    running alongside. Returns each student's figures and the cores kept busy meanwhile."""
    gate = threading.Barrier(k + 1)
    results: list[dict] = [{} for _ in range(k)]

    def student(i: int) -> None:
        out = results[i]
        out.update(load_s=None, lost="", step_ms=[], plan_ms=[], edit_ms=None, steps_per_s=0.0)
        s = None
        time.sleep(0.2 * i)
        try:
            s = Student(url, f"student-{i}")
            out["load_s"] = s.open(args.scene)
            if args.samples:
                s.search(args.samples)
        except Exception as e:  # a lost student counts, and stops
            out["lost"] = f"{type(e).__name__}: {e}"
        gate.wait()
        try:
            if not out["lost"]:
                act(s, args, out)
        except Exception as e:
            out["lost"] = f"{type(e).__name__}: {e}"
        finally:
            if s is not None:
                s.close()

    threads = [threading.Thread(target=student, args=(i,), daemon=True) for i in range(k)]
    for t in threads:
        t.start()
    gate.wait()
    box: dict = {}
    other = threading.Thread(target=lambda: box.update(seen=beside())) if beside else None
    _, cores = measured(server, lambda: _all(threads, other))
    return results, {**cores, **box}


def _all(threads, other) -> None:
    if other is not None:
        other.start()
    for t in threads:
        t.join()
    if other is not None:
        other.join()


def browsers_stepping(url: str, b: int, args) -> list[dict]:
    """``b`` real browsers (app_load's person) stepping as the students do."""
    from app_load import person  # the browser-driven person of benchmarks/app_load.py
    from playwright.async_api import async_playwright

    async def go() -> list[dict]:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            now = time.monotonic() + 0.5
            people = await asyncio.gather(
                *(person(browser, url, args.steps, args.think, now + 0.2 * i) for i in range(b))
            )
            await browser.close()
        return people

    return asyncio.run(go())


def cpu_tree_seconds(pid: int) -> float:
    """CPU seconds of a process and its living children (the agents' processes)."""
    from app_load import cpu_seconds

    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            total += cpu_seconds(p)
            for task in Path(f"/proc/{p}/task").iterdir():  # children of every thread
                todo += [int(k) for k in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def measured(server, fn):
    """``fn()``, with the cores kept busy by the server (its processes: the web process and
    the agents'), by the web process alone, and by the machine."""
    from app_load import cpu_seconds, machine_cpu_seconds

    pid = server.proc.pid
    cpu0, web0, all0 = cpu_tree_seconds(pid), cpu_seconds(pid), machine_cpu_seconds()
    t0 = time.monotonic()
    out = fn()
    wall = time.monotonic() - t0
    cores = {
        "server_cores": round((cpu_tree_seconds(pid) - cpu0) / wall, 2),
        "web_cores": round((cpu_seconds(pid) - web0) / wall, 2),
        "machine_cores": round((machine_cpu_seconds() - all0) / wall, 2),
        "wall_s": round(wall, 1),
    }
    return out, cores


def step_figures(people: list[dict]) -> dict:
    ms = np.array([x for p in people for x in p["step_ms"]])
    plan = np.array([x for p in people for x in p["plan_ms"]])
    edits = [p["edit_ms"] for p in people if p.get("edit_ms") is not None]
    return {
        "students": len(people),
        "steps": int(ms.size),
        "lost": sum(bool(p["lost"]) for p in people),
        "why_lost": sorted({p["lost"] for p in people if p["lost"]})[:3],
        "step_ms_p50": round(float(np.median(ms)), 1) if ms.size else None,
        "step_ms_p95": round(float(np.percentile(ms, 95)), 1) if ms.size else None,
        "per_student_p95": [
            round(float(np.percentile(p["step_ms"], 95))) if p["step_ms"] else None for p in people
        ],
        "edit_ms_p50": round(float(np.median(edits)), 1) if edits else None,
        "plan_ms_p50": round(float(np.median(plan)), 1) if plan.size else None,
        "load_s_max": round(max((p["load_s"] or 0.0) for p in people), 2),
    }


def serve(args, placement: str, home: str):
    env = {"LAB_PLACEMENT": placement}
    if placement == "ray":
        env["LAB_RAY"] = args.ray or "local"
    return LabServer(home=home, omp_threads=None, log=args.log, **env)


def one_placement(args, placement: str) -> dict:
    print(f"[{placement}] starting the server", flush=True)
    out: dict = {"placement": placement}
    with tempfile.TemporaryDirectory() as home:
        server = serve(args, placement, home)
        with server as url:
            _phases(args, placement, server, url, out)
    one = out.get("run_one", {}).get("steps_per_s")
    out["served_ratio"] = round(out["run_class"]["steps_per_s"] / one, 2) if one else None
    return out


def _phases(args, placement: str, server, url: str, out: dict) -> None:
    """The step phases, then the run phases, on one server."""
    warm = argparse.Namespace(**{**vars(args), "steps": 2})
    together(stepping, url, 1, warm, server)  # imports, the first model load: not timed
    for k, label in ((1, "step_one"), (args.students, "step_class")):
        if "step" not in args.phases:
            break
        browsers = args.browsers if label == "step_class" else 0
        beside = (lambda b=browsers: browsers_stepping(url, b, args)) if browsers else None
        people, cores = together(stepping, url, k, args, server, beside)
        seen = cores.pop("seen", None)
        out[label] = {**step_figures(people), **cores}
        if seen is not None:
            ms = [m for p in seen for m in p["step_ms"]]
            out[label]["browsers"] = {
                "people": len(seen),
                "step_ms_p50": round(float(np.median(ms)), 1) if ms else None,
                "step_ms_p95": round(float(np.percentile(ms, 95)), 1) if ms else None,
                "lost": sum(p["failed"] for p in seen),
            }
        _say(placement, label, out[label])
    for k, label in ((1, "run_one"), (args.run_students, "run_class")):
        if "run" not in args.phases:
            break
        people, cores = together(running, url, k, args, server)
        rates = [p["steps_per_s"] for p in people]
        out[label] = {
            "students": k,
            "steps_per_s": round(float(sum(rates)), 2),
            "per_student": [round(r, 2) for r in rates],
            "lost": sum(bool(p["lost"]) for p in people),
            "why_lost": sorted({p["lost"] for p in people if p["lost"]})[:3],
            "load_s_max": round(max((p["load_s"] or 0.0) for p in people), 2),
            **cores,
        }
        _say(placement, label, out[label])


def _say(placement: str, label: str, r: dict) -> None:
    if "step_ms_p50" in r:
        print(
            f"[{placement}] {label}: {r['students']} student(s), step p50 {r['step_ms_p50']} ms, "
            f"p95 {r['step_ms_p95']} ms over {r['steps']} steps, {r['lost']} lost "
            f"{r['why_lost'] or ''}; term edit {r['edit_ms_p50']} ms; plan {r['plan_ms_p50']} ms; "
            f"page load max {r['load_s_max']} s; cores busy: server {r['server_cores']} (web "
            f"{r['web_cores']}), "
            f"machine {r['machine_cores']} of {os.cpu_count()}",
            flush=True,
        )
    else:
        print(
            f"[{placement}] {label}: {r['students']} student(s) on Run, {r['steps_per_s']} steps "
            f"served per s ({r['per_student']}), {r['lost']} lost {r['why_lost'] or ''}; cores "
            f"busy: server {r['server_cores']} (web {r['web_cores']}), machine "
            f"{r['machine_cores']}; page load max {r['load_s_max']} s",
            flush=True,
        )


def plan_threads(rounds: int) -> dict:
    """Plans per second per core of the Plan page's default agent on Reach at 1..cores
    torch threads, interleaved over ``rounds`` (in this process, the imagination not
    compiled: as an agent's own process plans, ``app.hosts``)."""
    model, _ = load_checkpoint(ROOT / "pretrained" / "reach-state")
    scene = scenes.make("reach").unwrapped
    agent = build_agent(model, scene, CostSet(), AgentConfig(search=PlannerConfig()), seed=0)
    agent.reset(seed=0)
    cores = len(os.sched_getaffinity(0))
    times: dict[int, list[float]] = {n: [] for n in range(1, cores + 1)}
    before = torch.get_num_threads()
    with compiled.off():
        for _ in range(rounds):
            for n in times:
                torch.set_num_threads(n)
                agent.think()
                t0 = time.perf_counter()
                for _ in range(10):
                    agent.think()
                times[n].append((time.perf_counter() - t0) / 10)
    torch.set_num_threads(before)
    scene.close()
    plan_ms = {n: float(np.median(t)) * 1e3 for n, t in times.items()}
    per_core = {n: 1e3 / ms / n for n, ms in plan_ms.items()}
    best = max(per_core, key=per_core.get)
    for n in plan_ms:
        print(f"plan at {n} thread(s): {plan_ms[n]:.1f} ms, {per_core[n]:.1f} plans/s per core")
    return {
        "plan_ms": {str(n): round(v, 1) for n, v in plan_ms.items()},
        "plans_per_s_per_core": {str(n): round(v, 1) for n, v in per_core.items()},
        "best_threads": best,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--students", type=int, default=10, help="students stepping together")
    ap.add_argument("--run-students", type=int, default=20, help="students on Run together")
    ap.add_argument("--steps", type=int, default=12, help="Step presses per student")
    ap.add_argument("--think", type=float, default=1.0, help="seconds between presses")
    ap.add_argument("--run-seconds", type=float, default=20.0, help="seconds on Run")
    ap.add_argument(
        "--placement", default="thread,process,ray", help="comma-separated: thread, process, ray"
    )
    ap.add_argument("--ray", default="", help="the Ray address for the ray placement (local)")
    ap.add_argument("--browsers", type=int, default=1, help="real browsers beside the class")
    ap.add_argument(
        "--scene",
        default="ballrun",
        help="the scene each student picks (default ballrun: a goal-free task, whose "
        "episodes do not end early on Run; reach: the page's first scene)",
    )
    ap.add_argument("--quick", action="store_true", help="4 students, 4 steps, 8 s on Run")
    ap.add_argument("--samples", type=int, default=0, help="the Samples N each student sets")
    ap.add_argument("--phases", default="step,run", help="which: step, run or both")
    ap.add_argument("--log", default=None, help="write the server's log here")
    args = ap.parse_args()
    if args.quick:
        args.students, args.run_students = min(args.students, 4), min(args.run_students, 4)
        args.steps, args.browsers = min(args.steps, 4), 0
        args.run_seconds = min(args.run_seconds, 8.0)
    threads = plan_threads(2 if args.quick else 6)
    places = [p.strip() for p in args.placement.split(",") if p.strip()]
    if args.ray and "ray" not in places:
        places.append("ray")
    results = [one_placement(args, p) for p in places]
    for r in results:
        if not {"step_class", "run_class"} <= set(r):
            continue
        c, run = r["step_class"], r["run_class"]
        print(
            f"{r['placement']}: {c['students']} stepping, p95 {c['step_ms_p95']} ms "
            "(goal <= 1500), "
            f"{c['lost']} lost (goal 0); {run['students']} on Run serve {r['served_ratio']} x one "
            "alone (goal >= 0.9)"
        )
    out = {"plan_threads": threads, "placements": results}
    print(json.dumps(out))
    save("class_load", out, ap, args, ignore=("log",))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
