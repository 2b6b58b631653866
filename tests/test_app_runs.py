"""The app's background work without a browser: runs, the registry, idle stops, resume."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.agent import AgentConfig
from agents.cost import CostSet, Term
from agents.planners import CEM_300, PlannerConfig
from app import home, views
from app.home import PRETRAINED, preset_costs
from app.planrun import PlanRun, PlanSettings
from app.runs import Eta, Registry, Run, Turns
from app.workers import CollectRun, ExperimentRun, LessonRun, StressRun, TrainRun
from common.errors import LabError
from experiments.report import experiment_csv
from scenes.collect import CollectConfig, collect
from worldmodels.checkpoint import load_checkpoint
from worldmodels.train import TrainConfig

CPU = torch.device("cpu")


def until(cond, timeout: float = 60.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("runs") / "reach"
    collect(
        CollectConfig(scene="reach", out=str(out), episodes=12, steps=30, workers=1, progress=False)
    )
    return str(out)


def tiny_training(data: str, out: Path, steps: int) -> TrainConfig:
    return TrainConfig(
        data=data,
        out=str(out),
        steps=steps,
        batch=32,
        hidden=32,
        latent_dim=8,
        predictor_hidden=32,
        eval_every=25,
        decoder=False,
        progress=False,
    )


@pytest.mark.slow
def test_unwatched_training_stops_at_a_checkpoint_and_goes_on_from_it(data, tmp_path):
    reg = Registry(idle_seconds=0.6, forget_seconds=3600)
    run = reg.add(TrainRun(tiny_training(data, tmp_path / "t", 100_000), CPU)).start()

    def training() -> bool:
        run.touch()  # watched while it starts
        snap = run.snapshot()
        return snap is not None and snap.step > 10

    assert until(training)
    # then nobody touches it: the reaper stops it, and stopping saves
    assert until(lambda: not run.active, timeout=30)
    assert run.idle_stopped and run.status == "stopped"
    step = run.snapshot().step
    assert 0 < step < 100_000
    _, config = load_checkpoint(tmp_path / "t" / "checkpoint")
    assert config["step"] == step
    run.restart()  # a new Trainer resumes from the run folder

    def moved_on() -> bool:
        run.touch()  # watched now
        snap = run.snapshot()
        return snap is not None and snap.step > step

    assert until(moved_on)
    run.stop()
    assert until(lambda: not run.active)


@pytest.mark.slow
def test_a_watched_run_is_left_alone_and_a_forgotten_one_is_dropped(data, tmp_path):
    reg = Registry(idle_seconds=0.6, forget_seconds=1.5)
    run = reg.add(TrainRun(tiny_training(data, tmp_path / "w", 100_000), CPU)).start()
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        run.touch()
        time.sleep(0.1)
    assert run.active and not run.idle_stopped
    assert until(lambda: reg.get(run.id) is None, timeout=30)
    assert not run.active


@pytest.mark.slow
def test_collection_in_a_run_reports_progress_and_can_stop_and_go_on(tmp_path):
    cfg = CollectConfig(
        scene="reach",
        out=str(tmp_path / "c"),
        episodes=200,
        steps=30,
        workers=1,
        episodes_per_shard=2,
    )
    run = CollectRun(cfg).start()
    assert until(lambda: run.done >= 4)
    run.stop()
    assert until(lambda: not run.active)
    assert run.status == "stopped" and run.done < 200
    run.restart()
    assert until(lambda: run.status == "finished", timeout=120)
    assert run.done == 200


def test_a_plan_run_searches_with_the_pages_icem_settings():
    reg = Registry(idle_seconds=60, forget_seconds=3600)
    settings = PlanSettings(
        scene="reach",
        checkpoint=str(PRETRAINED / "reach-state"),
        noise_beta=1.5,
        keep=0.2,
        decay=1.5,
    )
    run = reg.add(PlanRun(settings, preset_costs("reach")["task only"], CPU)).start()
    run.wait(lambda w: w.version >= 1, timeout=60)
    search = run.host.session.agent.cfg.search
    assert (search.noise_beta, search.keep, search.decay) == (1.5, 0.2, 1.5)
    run.send("step")
    run.wait(lambda w: w.t == 1)
    assert run.host.session.agent.kept is not None  # the first plan's elites ride on to the next
    run.stop()
    assert until(lambda: not run.active)


def test_plan_run_steps_previews_a_cost_edit_and_pauses_when_idle():
    reg = Registry(idle_seconds=0.8, forget_seconds=3600)
    costs = preset_costs("reach")["task only"]
    settings = PlanSettings(scene="reach", checkpoint=str(PRETRAINED / "reach-state"))
    run = reg.add(PlanRun(settings, costs, CPU)).start()
    v = run.wait(lambda w: w.version >= 1, timeout=60)
    assert v.t == 0 and v.real.shape == (256, 256, 3) and v.imagined_frames.shape[0] == 16
    last = run.host.session.agent.planner.sizes()[-1]  # the last round's samples (iCEM's decay)
    assert v.samples_xy.shape == (last, 16, 2) and set(v.terms) == {"task"}
    run.send("step")
    v = run.wait(lambda w: w.t == 1)
    assert len(v.history) == 1 and v.history[0]["frame"].shape == (128, 128, 3)
    # a cost edit while paused re-plans from the same state, without acting
    edited = CostSet(terms=[*preset_costs("reach")["soft: gentle"].terms])
    version = run.set_costs(edited)
    v = run.wait(lambda w: w.cost_version >= version)
    assert v.t == 1 and set(v.terms) == {"task", "gentle"}
    # a bad expression: reported, and the last good version stays in force
    bad = CostSet(terms=[edited.terms[0].__class__("gentle", "relu(speed - ")])
    version = run.set_costs(bad)
    v = run.wait(lambda w: w.cost_version >= version)
    assert "gentle" in v.cost_errors and not v.message  # said beside the term, once
    assert [t.expression for t in v.in_force] == ["relu(speed - 0.3)"]
    run.touch()
    run.send("run")
    # polled as an open page polls it (a loaded machine may take over the idle time
    # for three steps) ...
    assert until(lambda: run.touch() or run.view().t >= 3)
    # ... then nobody polls: it pauses (the episode stays where it is)
    assert until(lambda: not run.running, timeout=30) and run.idle_stopped
    t = run.view().t
    time.sleep(0.5)
    assert run.view().t == t and run.active
    assert len(run.video("gif")) > 1000
    run.stop()
    assert until(lambda: not run.active)


def test_plan_run_refuses_a_checkpoint_of_another_scene():
    settings = PlanSettings(scene="kitchen", checkpoint=str(PRETRAINED / "reach-state"))
    run = PlanRun(settings, CostSet(), CPU).start()
    assert until(lambda: not run.active)
    assert run.status == "error" and "reach model, not kitchen" in run.error


def test_plan_run_checks_a_hard_term_over_the_goal_on_real_steps():
    """A hard term may read the goal (Push's goal_block_x): the run plans with it and checks
    it on every real step against the episode's goal."""
    near = Term("block near goal x", "abs(block_x - goal_block_x) - 5", kind="hard")
    costs = CostSet(terms=[*preset_costs("push")["subgoal: get behind the block"].terms, near])
    settings = PlanSettings(scene="push", checkpoint=str(PRETRAINED / "push-state"))
    run = PlanRun(settings, costs, CPU).start()
    run.wait(lambda w: w.version >= 1, timeout=60)
    run.send("step")
    v = run.wait(lambda w: w.t == 1, timeout=60)
    assert run.status != "error", run.error
    value, limit = v.history[0]["real_terms"]["block near goal x"]
    assert limit == 0.0 and -5.0 <= value < -3.5 and not v.history[0]["violated"]
    run.stop()
    assert until(lambda: not run.active)


def test_a_goal_is_checked_before_the_episode_starts_again():
    """A goal the scene refuses (in a wall, out of its region) leaves the episode as it
    was, with the reason; every point the page offers for a click is one it takes."""
    settings = PlanSettings(scene="wall", checkpoint=str(PRETRAINED / "wall-state"))
    run = PlanRun(settings, CostSet(), CPU).start()
    run.wait(lambda w: w.version >= 1, timeout=60)
    run.send("step")
    v = run.wait(lambda w: w.t == 1, timeout=60)
    where = (v.signals["x"], v.signals["y"])
    assert len(v.goal_points) > 100
    for p in v.goal_points[::7]:
        run.host.session.scene.check_goal(p)  # (raises if refused)
    run.send("goal", [0.0, 0.0])  # the dividing wall runs through the middle
    v = run.wait(lambda w: "wall" in w.message, timeout=60)
    assert v.t == 1 and (v.signals["x"], v.signals["y"]) == where
    run.send("step")  # the episode goes on from where it was
    v = run.wait(lambda w: w.t == 2, timeout=60)
    goal = [float(g) for g in v.goal_points[0]]
    run.send("goal", goal)
    v = run.wait(lambda w: w.t == 0 and w.version > 0 and w.signals, timeout=60)
    assert np.allclose(v.goal, goal, atol=1e-6)
    run.stop()
    assert until(lambda: not run.active)


def test_turns_are_served_in_the_order_asked_and_a_runner_cannot_barge_back_in():
    turns = Turns(slots=1)
    order: list[str] = []
    first = threading.Event()

    def runner() -> None:  # an agent on Run: asks again the moment its turn ends
        for i in range(3):
            with turns.take():
                order.append("runner")
                first.set()
                if i == 0:  # both people are queued before its first turn ends
                    assert until(lambda: turns.waiting == 2, timeout=10)

    def stepper(name: str) -> None:
        first.wait()
        with turns.take():
            order.append(name)

    threads = [threading.Thread(target=runner)]
    threads += [threading.Thread(target=stepper, args=(f"p{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    # both people who asked during the runner's first turn go before its later turns
    assert order[0] == "runner" and set(order[1:3]) == {"p0", "p1"}, order
    assert order.count("runner") == 3 and turns.waiting == 0


def test_a_registered_run_takes_the_registry_s_turns():
    reg = Registry(idle_seconds=60)
    run = reg.add(PlanRun(PlanSettings(checkpoint=""), CostSet(), CPU))
    other = reg.add(PlanRun(PlanSettings(checkpoint=""), CostSet(), CPU))
    assert run.turns is reg.turns is other.turns  # one server, one queue
    asked = threading.Event()

    def second() -> None:
        asked.set()
        with other.turn():
            pass

    with run.turn():
        t = threading.Thread(target=second)
        t.start()
        asked.wait(5)
        assert until(lambda: reg.turns.waiting == 1, timeout=5)  # it waits for this turn
    t.join(5)
    assert not t.is_alive() and reg.turns.waiting == 0


def test_the_wall_page_draws_the_walls_and_the_goal_on_imagined_frames():
    reg = Registry(idle_seconds=60)
    settings = PlanSettings(scene="wall", checkpoint=str(PRETRAINED / "wall-state"), seed=1)
    run = reg.add(PlanRun(settings, preset_costs("wall")["task only"], CPU)).start()
    try:
        v = run.wait(lambda w: w.version >= 1, timeout=60)
        # the arena's four walls and the two halves of the dividing wall, in the x-y plane
        assert len(v.walls) == 6 and (0.0, pytest.approx(-0.325), 0.05, pytest.approx(0.675)) in [
            (cx, cy, hx, hy) for cx, cy, hx, hy in v.walls
        ]
        fig = views.trajectories(v, ("x", "y"))
        assert sum(s["type"] == "rect" for s in fig["layout"]["shapes"]) == 6
        # the goal as a ring on decoded frames, where the top-down camera sees it (the
        # view spans the 2.2 m arena and its walls, y up the image)
        u, w = v.goal_uv
        assert u == pytest.approx(0.5 + v.goal[0] / 2.2, abs=0.02)
        assert w == pytest.approx(0.5 - v.goal[1] / 2.2, abs=0.02)
        marked = views.mark_goal(v.imagined_frames, v.goal_uv)
        ring = (marked == views.GOAL_RING).all(axis=-1)  # (H, 64, 64)
        rows, cols = np.nonzero(ring[0])
        assert len(rows) > 8
        assert abs(cols.mean() / 64 - u) < 0.03 and abs(rows.mean() / 64 - w) < 0.03
        assert not (v.imagined_frames == views.GOAL_RING).all(axis=-1).any()  # a copy is marked
    finally:
        run.stop()


POLICY_KITCHEN = PRETRAINED / "policy-kitchen"


@pytest.mark.slow
def test_a_lesson_runs_in_a_worker_and_its_page_sees_it_grow():
    """Nobody polls it (a closed tab): it still runs to its end, for a reopened tab."""
    reg = Registry(idle_seconds=0.5)
    run = reg.add(LessonRun("open_loop", CPU, quick=True)).start()
    assert run.kind == "lesson-open_loop" and reg.get(run.id, "lesson-open_loop") is run
    seen = []
    while run.active:
        seen.append(run.view())  # a copy: the worker goes on writing its own
        time.sleep(0.2)
    assert run.status == "finished", run.error
    final = run.view()
    assert final.done == final.total == run.done == run.total
    assert any(0 < v.done < v.total for v in seen)  # progress came in as it went
    assert len(final.rows) > max(len(v.rows) for v in seen[:1])
    assert run.result == final.figures and "receding_success_pushed" in run.result


@pytest.mark.skipif(not (POLICY_KITCHEN / "policy.json").exists(), reason="./lab pretrain")
def test_an_experiment_runs_a_policy_as_a_design(tmp_path):
    reg = Registry(idle_seconds=60)
    costs = preset_costs("kitchen")
    run = ExperimentRun(
        "kitchen",
        str(PRETRAINED / "kitchen-state"),
        {"spec": costs["hard: slow near person"], "System 1": costs["hard: slow near person"]},
        AgentConfig(search=PlannerConfig(samples=50, iterations=2), decode=False),
        1,
        0,
        tmp_path / "exp",
        CPU,
        options={"person_near": True},
        policies={"System 1": str(POLICY_KITCHEN)},
    )
    reg.add(run).start()
    assert until(lambda: not run.active, timeout=240)
    assert run.status == "finished", run.error
    assert run.results["System 1"].settings["actor"] == "policy"
    assert run.results["spec"].settings["actor"] == "planner"
    assert run.results["System 1"].settings["policy"] == str(POLICY_KITCHEN)


def test_an_experiment_runs_a_ppo_lagrangian_policy_beside_the_planner(tmp_path):
    """The trained-in baseline as a design: it acts on the raw state, its rule trained
    in, on the same seeded episode as the planner; the same return as PPO-L's own
    measure of it (experiments.ppol.measure) on that episode."""
    from experiments.ppol import load, measure

    folder = str(PRETRAINED / "ppol-ballcircle")
    offered = home.ppol_policies("ballcircle")
    assert folder in offered and "the task's cost" in offered[folder]
    assert str(PRETRAINED / "ppol-ballcircle-new") in offered
    assert not home.ppol_policies("carcircle").keys() & offered.keys()
    reward = preset_costs("ballcircle")["reward only"]
    run = ExperimentRun(
        "ballcircle",
        str(PRETRAINED / "ballcircle-state"),
        {"planner": reward, "PPO-L": reward},
        AgentConfig(search=PlannerConfig(samples=30, iterations=1), decode=False),
        1,
        0,
        tmp_path / "exp",
        CPU,
        trained={"PPO-L": folder},
    )
    Registry(idle_seconds=60).add(run).start()
    assert until(lambda: not run.active, timeout=240)
    assert run.status == "finished", run.error
    ppol, planner = run.results["PPO-L"], run.results["planner"]
    assert ppol.settings["actor"] == "ppol" and planner.settings["actor"] == "planner"
    assert ppol.episodes[0]["seed"] == planner.episodes[0]["seed"]  # the same episode
    own = measure(load(folder), 1, seed=0)[0]
    assert ppol.episodes[0]["return"] == pytest.approx(own["return"], abs=1e-3)


def test_an_experiment_runs_a_design_with_a_calibrated_margin_and_with_none(tmp_path):
    rule = CostSet(terms=[Term("slow", "speed", kind="hard", limit=0.5)])
    calibrated, none = "slow · calibrated, delta 0.05", "slow · no margin"
    cfg = AgentConfig(
        search=PlannerConfig(samples=50, horizon=8, iterations=2),
        delta=0.05,
        margin_steps=2,
        decode=False,
    )
    run = ExperimentRun(
        "reach",
        str(PRETRAINED / "reach-state"),
        {calibrated: rule, none: rule},
        cfg,
        1,
        0,
        tmp_path / "exp",
        CPU,
        guards={none: {"margin": 0.0, "delta": 0.0}},
        bases={calibrated: "slow", none: "slow"},
    )
    Registry(idle_seconds=60).add(run).start()
    assert until(lambda: not run.active, timeout=240)
    assert run.status == "finished", run.error
    assert run.results[calibrated].settings["delta"] == 0.05
    assert run.results[none].settings["delta"] == 0.0
    assert run.results[none].settings["margin_steps"] == 2  # the rest as the run's
    head = experiment_csv(run.results, "summary").splitlines()
    assert "# delta: per design" in head
    assert any(h.startswith(f"# design {none} guard: ") and "delta 0;" in h for h in head)
    with pytest.raises(LabError, match="margin"):
        ExperimentRun(
            "reach",
            str(PRETRAINED / "reach-state"),
            {none: rule},
            cfg,
            1,
            0,
            tmp_path / "bad",
            CPU,
            guards={none: {"samples": 3}},
        )


@pytest.mark.slow
def test_a_stress_run_finds_failures_the_plan_page_replays_as_they_happened(tmp_path, monkeypatch):
    monkeypatch.setattr(home, "RUNS", tmp_path)
    rule = Term("barely move", "relu(speed - 0.05)", "hard")  # any real motion breaks it
    ckpt = str(PRETRAINED / "reach-state")
    # plain CEM: iCEM at N = 60 held still and broke nothing in these two episodes
    cfg = AgentConfig(search=replace(CEM_300, samples=60, elites=0), decode=False)
    run = StressRun(
        "reach",
        ckpt,
        "still",
        CostSet(terms=[rule]),
        cfg,
        2,
        "random",
        tmp_path / "stress" / "t1",
        CPU,
    )
    Registry(idle_seconds=60).add(run).start()
    assert until(lambda: not run.active, timeout=120)
    assert run.status == "finished", run.error
    assert run.done == 2 and run.result.failures
    found = home.stress_failures("reach", ckpt)
    assert found and found[0].excess == run.result.failures[0]["excess"]
    assert home.stress_failures("reach", str(PRETRAINED / "wall-state")) == []
    # replay: the episode starts where the stress test's did
    f = found[0]
    plan = PlanRun(
        PlanSettings(scene="reach", checkpoint=ckpt, samples=60), CostSet(terms=[rule]), CPU
    ).start()
    plan.wait(lambda w: w.version >= 1, timeout=60)
    plan.send("reset", f.seed, f.options)
    v = plan.wait(lambda w: abs(w.signals.get("x", 9.0) - f.options["start"][0]) < 1e-6)
    assert [v.signals["x"], v.signals["y"]] == pytest.approx(f.options["start"])
    assert list(v.goal) == pytest.approx(f.options["goal"])
    plan.stop()
    assert until(lambda: not plan.active)


@pytest.mark.skipif(
    not (PRETRAINED / "high-wall" / "high.json").exists(),
    reason="pretrained/high-wall is made by ./lab pretrain",
)
def test_the_plan_run_draws_the_high_levels_plan_and_an_experiment_runs_it(tmp_path):
    high = str(PRETRAINED / "high-wall")
    settings = PlanSettings(scene="wall", checkpoint=str(PRETRAINED / "wall-state"), high=high)
    run = PlanRun(settings, CostSet(), CPU).start()
    try:
        v = run.wait(lambda w: w.version >= 1 and w.high_xy is not None, timeout=60)
        assert v.high_xy.shape == (10, 2) and v.high_frames.shape == (10, 64, 64, 3)
        assert v.high_k == 8 and len(v.imagined["x"]) == 8  # the low level plans 8 steps
        fig = views.trajectories(v, ("x", "y"))
        assert "subgoal (low level's goal)" in [t.get("name") for t in fig["data"]]
        run.send("search", replace(settings, high=""))  # off: flat again
        v = run.wait(lambda w: w.high_xy is None and len(w.imagined.get("x", ())) == 16, timeout=60)
    finally:
        run.stop()
    assert until(lambda: not run.active)
    reg = Registry(idle_seconds=60)
    exp = ExperimentRun(
        "wall",
        str(PRETRAINED / "wall-state"),
        {"flat": CostSet(), "learned": CostSet()},
        AgentConfig(search=PlannerConfig(samples=50, iterations=2), decode=False),
        1,
        0,
        tmp_path / "exp",
        CPU,
        highs={"learned": high},
    )
    reg.add(exp).start()
    assert until(lambda: not exp.active, timeout=240)
    assert exp.status == "finished", exp.error
    assert exp.results["learned"].settings["high"] == high
    assert "hierarchy" not in exp.results["flat"].settings


def test_a_lesson_stopped_by_its_page_ends_stopped_with_what_it_found():
    reg = Registry(idle_seconds=60)
    run = reg.add(LessonRun("open_loop", CPU, quick=True)).start()
    assert until(lambda: run.view().done >= 1, timeout=60)
    run.stop()
    assert until(lambda: not run.active, timeout=60)
    assert run.status == "stopped" and run.error == ""
    assert run.view().stage == "stopped" and run.result is None


class Clock:
    """Time that moves only when told (the estimator's known sequences)."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_the_time_left_counts_down_between_units_and_never_grows_with_time():
    clock = Clock()
    eta = Eta([4], clock=clock)
    assert eta.seconds() is None  # nothing measured
    for t, done in ((1.0, 1), (2.0, 2)):
        clock.t = t
        eta.update(done)
    assert eta.seconds() == pytest.approx(2.0)  # 1 s a unit, 2 units left
    seen = []
    for t in (2.5, 3.0, 3.5, 3.9):
        clock.t = t
        seen.append(eta.seconds())
    assert seen == pytest.approx([1.5, 1.0, 0.5, 0.1])
    clock.t = 10.0  # the third unit is overdue: unknown, not more and more
    assert eta.seconds() is None
    clock.t = 11.0
    eta.update(3)
    assert eta.seconds() == pytest.approx(11.0 / 3)


def test_a_lesson_s_long_last_unit_does_not_make_the_count_go_up():
    """The old estimate was elapsed x left / done: one unit of two done at 1 s, it said
    about 4 s left at 5 s and 51 s left at 52 s."""
    clock = Clock()
    run = Run("a lesson")
    run.clock = clock
    run.progress(0, 2)  # a stage of 2 units begins
    clock.t = 1.0
    run.progress(1, 2)
    shown = []
    for t in range(1, 60):
        clock.t = float(t)
        shown.append(run.eta)
    known = [s for s in shown if s is not None]
    assert known and all(b <= a for a, b in itertools.pairwise(known))
    assert shown[4] is None and shown[51] is None  # at 5 s and 52 s: overdue, unknown


def test_designs_of_unequal_cost_are_timed_each_at_its_own_pace():
    """Two designs of 6 episodes: the first 1/3 s an episode, the second 3 s. At 6 of 12
    the old estimate said 2 s left (the first design's pace); the second took 18 s."""
    clock = Clock()
    eta = Eta([6, 6], clock=clock)
    for i in range(1, 7):
        clock.t = i / 3
        eta.update(i)
    assert eta.under_way == 1
    assert eta.seconds() is None  # the second design's pace is not known yet: no guess
    clock.t = 5.0
    eta.update(7)
    assert eta.seconds() == pytest.approx(15.0)  # its own pace, 3 s, for 5 episodes
    # with known relative costs the second is guessed before it is measured
    clock.t = 0.0
    weighted = Eta([6, 6], weights=[1, 9], clock=clock)
    for i in range(1, 7):
        clock.t = i / 3
        weighted.update(i)
    assert weighted.seconds() == pytest.approx(18.0)
    # three designs: the one not begun goes at the mean pace of those measured
    clock.t = 0.0
    three = Eta([2, 2, 2], clock=clock)
    for t, done in ((1, 1), (2, 2), (5, 3)):
        clock.t = float(t)
        three.update(done)
    assert three.seconds() == pytest.approx(3 + 2 * (1 + 3) / 2)


def test_a_final_phase_is_its_own_part_and_a_resumed_run_is_timed_from_where_it_went_on():
    clock = Clock()
    eta = Eta([10, 1], weights=[1, 5], clock=clock)  # 10 episodes, then a phase like 5
    for i in range(1, 11):
        clock.t = float(i)
        eta.update(i)
    assert eta.seconds() == pytest.approx(5.0)
    resumed = Eta([10], done=6, clock=clock)  # 6 finished before: they took no time now
    clock.t += 2.0
    resumed.update(7)
    assert resumed.seconds() == pytest.approx(6.0)
    done = Eta([3], clock=clock)
    done.update(3)
    assert done.seconds() is None  # nothing left


def test_the_experiments_figures_are_named_in_words_on_the_page():
    from app.screens.experiments import RATES, in_words
    from app.views import interval_bars

    assert in_words("false_safe_rate") == "planned safe, broke a rule"
    assert in_words("violation_step_rate/keep off walls") == "steps breaking 'keep off walls'"
    rows = [{"design": "a", "success_rate": {"value": 0.5, "low": 0.2, "high": 0.8}}]
    fig = interval_bars(rows, RATES, labels=[in_words(m) for m in RATES])
    assert fig["data"][0]["x"][0] == "reached the goal"
    assert "share" in fig["layout"]["yaxis"]["title"]["text"]
