"""Where the Plan page's agents compute: threads, processes of their own, Ray; and a class.

Real sessions with the shipped Reach model and a real PyBullet scene in each placement;
the same seed gives the same plan wherever the agent is.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import plotly.io
import plotly.tools
import pytest
import torch

from agents.cost import CostSet, Term
from app import hosts, views
from app.home import PRETRAINED, preset_costs
from app.planrun import PlanRun, PlanSettings
from app.plansession import PlanSession
from app.runs import Registry
from common.errors import LabError
from worldmodels.batching import Batcher, Shared
from worldmodels.checkpoint import load_checkpoint

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[1]


def until(cond, timeout: float = 60.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def reach() -> PlanSettings:
    return PlanSettings(scene="reach", checkpoint=str(PRETRAINED / "reach-state"))


@pytest.fixture
def placed():
    """Placements made by a test, closed after it (their processes started ahead)."""
    made: list[hosts.Placement] = []

    def make(*args, **kw) -> hosts.Placement:
        made.append(hosts.Placement(*args, **kw))
        return made[-1]

    yield make
    for place in made:
        place.close()


def episode(placement: hosts.Placement, steps: int = 3) -> tuple[PlanRun, list]:
    """A Reach agent placed so, stepped ``steps`` times; the run and its actions."""
    run = PlanRun(reach(), preset_costs("reach")["task only"], CPU, placement).start()
    v = run.wait(lambda w: w.version >= 1, timeout=90)
    assert run.status == "running", run.error
    for t in range(1, steps + 1):
        run.send("step")
        v = run.wait(lambda w, t=t: w.t == t, timeout=60)
    assert v.t == steps
    return run, [h["action"] for h in v.history]


def stop(run: PlanRun) -> None:
    run.stop()
    assert until(lambda: not run.active, timeout=30)


def test_an_agent_in_a_process_of_its_own_plans_as_in_a_thread(placed):
    here, mine = episode(placed("thread"))
    stop(here)
    run, theirs = episode(placed("process"))
    assert theirs == mine  # the same seed, the same plans: nothing is lost crossing the pipe
    proc = run.host.proc
    assert proc.pid != os.getpid() and proc.is_alive()
    # what the page reads comes back whole: frames, the plane, the history, the video
    v = run.view()
    assert v.real.shape == (256, 256, 3) and v.imagined_frames.shape[0] == 16
    assert run.plot_signals == ("x", "y") and run.scene_goal_signals and run.obs == "state"
    assert len(v.history) == 3 and v.history[0]["frame"].shape == (128, 128, 3)
    assert len(run.video("gif")) > 1000
    # a cost edit while paused re-plans in the process, from the same state
    edited = CostSet(terms=[*preset_costs("reach")["soft: gentle"].terms])
    version = run.set_costs(edited)
    v = run.wait(lambda w: w.cost_version >= version)
    assert v.t == 3 and set(v.terms) == {"task", "gentle"}
    # a bad expression is said beside the term; the last good one stays in force
    version = run.set_costs(CostSet(terms=[Term("gentle", "relu(speed - ")]))
    v = run.wait(lambda w: w.cost_version >= version)
    assert "gentle" in v.cost_errors and [t.expression for t in v.in_force] == ["relu(speed - 0.3)"]
    # Run, then Pause: the agent steps on its own in its process
    run.send("run")
    assert until(lambda: run.view().t >= 6, timeout=60)
    run.send("pause")
    assert until(lambda: not run.running, timeout=30)
    # the page's own settings (speed, the next episode's options) are not overwritten by
    # the agent's updates; a reset without a seed replays this episode with those options
    run.send("reset", 5)
    run.wait(lambda w: w.t == 0 and not w.history, timeout=60)
    assert run.settings.seed == 5
    goal = [float(x) for x in run.view().goal_points[0]]
    run.settings.speed, run.settings.options = 0.01, {"goal": goal}
    run.send("run")
    assert until(lambda: run.view().t >= 3, timeout=60)
    run.send("pause")
    assert until(lambda: not run.running, timeout=30)
    assert run.settings.speed == 0.01 and run.settings.options == {"goal": goal}
    run.send("reset")
    v = run.wait(lambda w: w.t == 0 and not w.history, timeout=60)
    assert run.settings.seed == 5 and np.allclose(v.goal, goal, atol=1e-6)
    # a search the agent refuses leaves it as it was, and says why
    run.send("search", dataclasses.replace(run.settings, actor="policy", policy=""))
    v = run.wait(lambda w: "needs a policy" in w.message, timeout=60)
    assert "needs a policy" in v.message and run.settings.actor == "planner"
    stop(run)
    assert until(lambda: not proc.is_alive(), timeout=15)  # closed with its run


def test_a_refused_checkpoint_and_a_dead_process_are_said_plainly(placed):
    place = placed("process")
    wrong = PlanSettings(scene="kitchen", checkpoint=str(PRETRAINED / "reach-state"))
    run = PlanRun(wrong, CostSet(), CPU, place).start()
    assert until(lambda: not run.active, timeout=90)
    assert run.status == "error" and "reach model, not kitchen" in run.error
    run, _ = episode(place, steps=1)
    run.host.proc.kill()  # the agent's process dies (a crash in native code)
    run.send("step")
    assert until(lambda: not run.active, timeout=30)
    assert run.status == "error" and "the agent's process ended" in run.error


def test_spare_processes_are_started_ahead_and_replaced():
    spares = hosts.Spares(keep=1)
    spares.fill()
    assert until(lambda: len(spares._ready) == 1, timeout=60)
    first = spares.take()  # the spare, already running
    assert first.alive
    assert until(lambda: len(spares._ready) == 1, timeout=60)  # another behind it
    spares._ready[0].proc.kill()  # a spare that died meanwhile is passed over
    assert until(lambda: not spares._ready[0].alive, timeout=10)
    second = spares.take()
    assert second is not first and second.alive
    assert until(lambda: len(spares._ready) == 1 and spares._ready[0].alive, timeout=60)
    spares.close()
    for host in (first, second):
        host.close()
    assert not first.alive and not second.alive and not spares._ready


def test_a_placement_says_how_many_compute_at_once_and_refuses_nonsense(placed):
    cores = hosts.cores()
    assert placed("process").slots() == max(1, cores // hosts.THREADS_PER_PLAN)
    assert hosts.Placement("thread").slots() == 1  # one interpreter lock
    assert hosts.Placement("thread", share=Shared()).slots() == hosts.GPU_SLOTS
    with pytest.raises(LabError, match="one of thread, process, ray"):
        hosts.Placement("fork")
    with pytest.raises(LabError, match="Ray needs an address"):
        hosts.Placement("ray")
    place = hosts.serving(CPU)
    assert place.kind == ("process" if cores > 1 else "thread")
    reg = Registry(slots=place.slots(), placement=place)
    assert reg.turns.slots == place.slots() and reg.placement is place
    place.close()


@pytest.mark.slow
def test_ray_actors_plan_as_the_server_does():
    """Two local Ray workers serve agents whose plans are the thread's, step for step."""
    here, mine = episode(hosts.Placement("thread"))
    stop(here)
    place = hosts.Placement("ray", "local")
    # Ray started from a thread that ends (a Streamlit script run does): its processes
    # must outlive that thread
    asked = threading.Thread(target=place.slots)
    asked.start()
    asked.join(120)
    time.sleep(2)
    assert place.slots() >= 1
    runs = [PlanRun(reach(), preset_costs("reach")["task only"], CPU, place) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        assert run.wait(lambda w: w.version >= 1, timeout=120).version >= 1, run.error
        for t in range(1, 4):
            run.send("step")
            run.wait(lambda w, t=t: w.t == t, timeout=60)
    assert all([h["action"] for h in r.view().history] == mine for r in runs)
    for run in runs:
        stop(run)


def test_imagination_calls_of_many_agents_are_batched_and_each_gets_its_own_rows():
    shared = Shared(window=0.5)
    model, _ = shared.load(PRETRAINED / "reach-state", CPU)
    again, _ = shared.load(PRETRAINED / "reach-state", CPU)
    assert again is model  # one copy a checkpoint for the whole server
    alone, _ = load_checkpoint(PRETRAINED / "reach-state")
    # four agents whose costs read x and y, one whose cost reads speed; three plans each
    names = [["x", "y"]] * 4 + [["speed"]]
    gen = torch.Generator().manual_seed(0)
    calls = [
        [
            (
                torch.randn(n, model.cfg.latent_dim, generator=gen),
                torch.randn(n, 16, 2, generator=gen),
            )
            for _ in range(3)
        ]
        for n in (30, 24, 19, 50, 12)
    ]
    out = [[None] * 3 for _ in calls]
    start = threading.Barrier(len(calls))

    def agent(i: int) -> None:
        for k in range(3):
            start.wait()  # they plan side by side, as a class's agents do
            with torch.inference_mode():
                out[i][k] = model.imagine(*calls[i][k], names[i])

    threads = [threading.Thread(target=agent, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    batcher = model.batcher
    # the first round finds nobody expected; then the four of a kind go as one, and the
    # one reading other signals goes alone (its own compiled kind): at most 5 + 2 + 2
    assert batcher.calls == 15 and batcher.batches <= 9
    for mine, wanted, theirs in zip(calls, names, out, strict=True):
        for (s0, actions), (latents, signals) in zip(mine, theirs, strict=True):
            with torch.inference_mode():
                ref_latents, ref = alone.imagine(s0, actions, wanted)
            assert latents.shape == (len(s0), 16, model.cfg.latent_dim)
            assert sorted(signals) == sorted(wanted)
            torch.testing.assert_close(latents, ref_latents, rtol=1e-5, atol=1e-5)
            for k in wanted:
                torch.testing.assert_close(signals[k], ref[k], rtol=1e-5, atol=1e-5)
    # a call that needs gradients (gradient-descent planning) runs on its own
    actions = calls[0][0][1].clone().requires_grad_(True)
    latents, _ = model.imagine(calls[0][0][0], actions, ["x"])
    latents.sum().backward()
    assert actions.grad is not None and batcher.calls == 15


def test_agents_of_a_gpu_server_share_one_model_and_batch_through_it():
    """The thread placement with a share (a GPU's; a CPU here): two runs, one model."""
    place = hosts.Placement("thread", share=Shared(window=0.01))
    runs = [
        PlanRun(reach(), preset_costs("reach")["task only"], CPU, place).start() for _ in range(2)
    ]
    for run in runs:
        run.wait(lambda w: w.version >= 1, timeout=60)
        assert run.status == "running", run.error
    first, second = (run.host.session.agent.model for run in runs)
    assert first is second and first.batcher.calls > 0
    for run in runs:
        run.send("step")
    for run in runs:
        assert run.wait(lambda w: w.t == 1, timeout=60).t == 1
        stop(run)


def test_a_failed_batch_raises_in_every_caller():
    def broken(s0, actions, names):
        raise ValueError("the card is gone")

    batcher = Batcher(broken, window=0.05)
    errors: list = []

    def call() -> None:
        try:
            batcher.imagine(torch.zeros(2, 4), torch.zeros(2, 3, 1), ["x"])
        except ValueError as e:
            errors.append(str(e))

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == ["the card is gone"] * 3


@pytest.mark.slow
def test_class_load_plays_a_small_class_against_a_real_server():
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "class_load.py"),
            "--quick",
            "--students",
            "2",
            "--run-students",
            "2",
            "--steps",
            "2",
            "--think",
            "0.2",
            "--run-seconds",
            "3",
            "--placement",
            "process",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    (place,) = result["placements"]
    assert place["placement"] == "process"
    step, run = place["step_class"], place["run_class"]
    assert step["students"] == 2 and step["steps"] == 4 and step["lost"] == 0
    assert 0 < step["step_ms_p50"] <= step["step_ms_p95"] and step["edit_ms_p50"] > 0
    assert run["students"] == 2 and run["lost"] == 0 and all(r > 0 for r in run["per_student"])
    assert step["server_cores"] > 0 and place["served_ratio"] > 0
    assert result["plan_threads"]["best_threads"] >= 1
    assert np.isfinite(list(result["plan_threads"]["plan_ms"].values())).all()


def test_the_plan_pages_figures_are_drawn_as_plotly_would_validate_them():
    """``views.drawn`` skips plotly's validation: what it sends is what validation gives."""
    session = PlanSession(reach(), preset_costs("reach")["soft: gentle"], CPU)
    try:
        session.start()
        v = session.handle("step").view
    finally:
        session.close()
    for fig in (
        views.trajectories(v, ("x", "y"), clickable=True, bounds=[]),
        views.signals_over_time(v, list(v.shown), {}),
        views.term_bars(v.terms, {}, set()),
    ):
        checked = plotly.tools.return_figure_from_figure_or_data(fig, validate_figure=True)
        fast = plotly.tools.return_figure_from_figure_or_data(views.drawn(fig), True)
        want = json.loads(plotly.io.to_json(checked, validate=False))
        got = json.loads(plotly.io.to_json(fast, validate=False))
        assert unempty(got) == unempty(want)


def unempty(x):
    """``x`` without its empty lists and dicts (validation drops them: no shapes drawn)."""
    if isinstance(x, dict):
        return {k: unempty(v) for k, v in x.items() if v not in ([], {})}
    if isinstance(x, list):
        return [unempty(v) for v in x]
    return x
