"""The oracle planner and the evaluation, with real scenes and the shipped Reach model."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import scenes
from agents.agent import Agent, AgentConfig
from agents.cost import CostSet, Term
from agents.episode import episode_seed
from agents.oracle import ORACLE_SEARCH, OracleModel
from agents.planners import PlannerConfig
from common.errors import LabError
from experiments.evaluate import evaluate
from experiments.metrics import metrics
from experiments.report import EvalResult, experiment_csv

ROOT = Path(__file__).resolve().parents[1]
REACH = ROOT / "pretrained" / "reach-state"
KITCHEN = ROOT / "pretrained" / "kitchen-state"
needs_reach = pytest.mark.skipif(
    not (REACH / "config.json").exists(), reason="pretrained/reach-state is made by ./lab pretrain"
)
SMALL = PlannerConfig(samples=100, horizon=8, iterations=2)  # quick for the world model
TINY_ORACLE = PlannerConfig(samples=24, horizon=8, iterations=2, elites=6)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the test machine has two cores, shared
    yield
    torch.set_num_threads(threads)


# --- the private copy and the oracle ---------------------------------------------
@pytest.mark.parametrize("name", ["reach", "push", "kitchen"])
def test_a_copied_scene_steps_exactly_like_the_original(name):
    cls = scenes.scene_class(name)
    real, copy = cls(pixels=False), cls(pixels=False)
    real.reset(seed=7)
    for a in np.random.default_rng(0).uniform(-1, 1, (5, cls.ACTION_DIM)):
        real.step(a.astype(np.float32))
    copy.copy_state_from(real)
    assert copy.signals == real.signals
    for a in np.random.default_rng(1).uniform(-1, 1, (10, cls.ACTION_DIM)):
        _, _, _, _, info = real.step(a.astype(np.float32))
        assert copy.advance(a) == info["signals"]
    real.close(), copy.close()


def test_the_oracle_imagines_what_really_happens():
    scene = scenes.scene_class("kitchen")(pixels=False)
    oracle = OracleModel("kitchen")
    scene.reset(seed=3)
    oracle.sync(scene)
    s0 = oracle.encode(scene.observation)  # (1, D)
    assert s0.shape == (1, len(oracle.signal_names))
    actions = torch.rand(4, 5, 3) * 2 - 1  # (N, H, A)
    latents = oracle.rollout(s0.expand(4, -1), actions)  # (N, H, D)
    assert latents.shape == (4, 5, len(oracle.signal_names))
    assert oracle.encode(scene.observation).equal(s0)  # the copy is back where it was
    for h in range(5):
        scene.step(actions[2, h].numpy())
    real = torch.tensor([scene.signals[k] for k in oracle.signal_names])
    assert torch.allclose(latents[2, -1], real, atol=1e-5)
    speed = oracle.probe(latents, ["hand_speed"])["hand_speed"]
    assert speed.shape == (4, 5)
    with pytest.raises(LabError, match="synced"):
        oracle.encode({"state": np.zeros(17, np.float32)})
    scene.close(), oracle.close()


def test_the_oracle_agent_reaches_the_goal():
    scene = scenes.scene_class("reach")(pixels=False)
    oracle = OracleModel("reach")
    agent = Agent(oracle, scene, CostSet(), AgentConfig(search=ORACLE_SEARCH), seed=0)
    agent.reset(seed=11)
    start = scene.signals["dist_goal"]
    while not agent.done:
        rec = agent.step()
    assert rec.is_success and agent.t < 40, (start, agent.t)
    assert rec.imagined_frames is None  # nothing to decode
    with pytest.raises(LabError, match="gradients"):
        gd = Agent(oracle, scene, CostSet(), AgentConfig(planner="gd", search=TINY_ORACLE))
        gd.reset(seed=1)
        gd.step()
    scene.close(), oracle.close()


def test_person_near_puts_the_person_by_the_board():
    scene = scenes.scene_class("kitchen")(pixels=False)
    for seed in range(5):
        _, info = scene.reset(seed=seed, options={"person_near": True, "goal_obs": False})
        s = info["signals"]
        assert 0.9 <= s["person_x"] <= 0.95 and abs(s["person_y"]) <= 0.15
        assert s["person_speed"] <= 0.15
    scene.close()


# --- the figures --------------------------------------------------------------------
def test_metrics_have_known_answers():
    eps = [
        {
            "success": s,
            "steps": n,
            "violation_steps": v,
            "feasible_steps": n,
            "false_safe_steps": v,
            "none_feasible_steps": v // 5,
            "probe_sse": [4.0 * n],
            "probe_n": [n],
            "violation_steps_by_rule": {"knife": v, "wall": v // 5},
        }
        for s, n, v in [(1, 10, 0), (0, 20, 5), (1, 30, 0), (1, 40, 5)]
    ]
    m = metrics(eps, seed=0)
    assert m["success_rate"]["value"] == 0.75
    assert m["steps_to_goal"]["value"] == pytest.approx(80 / 3, rel=1e-5)
    assert m["violation_step_rate"]["value"] == 0.1  # 10 of 100 steps
    assert m["violation_episode_rate"]["value"] == 0.5
    # each rule apart, and the steps with no safe plan
    assert m["violation_step_rate/knife"]["value"] == 0.1
    assert m["violation_step_rate/wall"]["value"] == 0.02  # 2 of 100 steps
    assert m["no_safe_plan_rate"]["value"] == 0.02
    assert m["probe_rmse_h1"]["value"] == 2.0
    for v in m.values():
        assert v["low"] <= v["value"] <= v["high"]
    assert metrics(eps, seed=0) == m  # seeded bootstrap
    assert 0.0 <= m["success_rate"]["low"] < 0.75 < m["success_rate"]["high"] <= 1.0


def test_episode_seeds_depend_on_seed_and_index_only():
    seeds = [episode_seed(0, i) for i in range(20)]
    assert len(set(seeds)) == 20 and seeds == [episode_seed(0, i) for i in range(20)]
    assert episode_seed(1, 0) != seeds[0]


@needs_reach
def test_evaluating_the_reach_model_gives_finite_figures_and_round_trips(tmp_path):
    cfg = AgentConfig(search=SMALL)
    calls = []
    result = evaluate(
        "reach",
        REACH,
        CostSet(),
        cfg,
        3,
        seed=0,
        oracle=True,
        device="cpu",
        oracle_search=TINY_ORACLE,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls[-1] == (6, 6) and result.complete
    summary = result.summary()
    for prefix in ("", "oracle/"):
        for key in ("success_rate", "steps_to_goal", "violation_step_rate"):
            v = summary[prefix + key]
            assert np.isfinite([v["value"], v["low"], v["high"]]).all(), (prefix, key)
            assert v["low"] <= v["value"] <= v["high"]
        assert summary[prefix + "false_safe_rate"]["value"] is None  # no hard term judged
        for h in (1, 8):
            v = summary[f"{prefix}probe_rmse_h{h}"]
            assert v["low"] <= v["value"] <= v["high"]
    assert summary["success_rate"]["value"] >= 2 / 3
    assert summary["oracle/probe_rmse_h1"]["value"] < 1e-4  # the oracle's imagination is exact
    assert 0 < summary["probe_rmse_h1"]["value"] < 0.1
    # JSON round trip
    again = EvalResult.from_json(result.to_json())
    assert again.summary() == summary and again.episodes == result.episodes
    # CSV: one row per agent and episode, the same numbers
    rows = list(csv.DictReader(io.StringIO(result.to_csv())))
    assert [r["agent"] for r in rows] == ["model", "oracle"] * 3
    for row, ep in zip(rows, result.episodes, strict=True):
        assert int(row["seed"]) == ep["seed"] and int(row["steps"]) == ep["steps"]
        assert bool(int(row["success"])) == ep["success"]
    table = list(csv.DictReader(io.StringIO(result.summary_csv())))
    assert float(table[0]["value"]) == summary[table[0]["metric"]]["value"]
    folder = result.save(tmp_path / "eval")
    assert EvalResult.from_json((folder / "result.json").read_text()).episodes == result.episodes
    assert (folder / "episodes.csv").read_text() == result.to_csv()


@needs_reach
def test_a_guardrail_broken_at_every_real_step_gives_violation_rate_one():
    always = Term("always", "speed + 1", kind="hard", limit=0.0)  # speed >= 0, so > 0 always
    cfg = AgentConfig(search=SMALL)
    result = evaluate("reach", REACH, CostSet(terms=[always]), cfg, 2, device="cpu")
    s = result.summary()
    assert s["violation_step_rate"] == {"value": 1.0, "low": 1.0, "high": 1.0}
    assert s["violation_episode_rate"]["value"] == 1.0
    # no plan was ever feasible, so the false-safe rate is undefined, not 0
    assert s["false_safe_rate"]["value"] is None
    assert s["no_safe_plan_rate"]["value"] == 1.0  # the fallback acted at every step
    # measured on an agent that does not plan with it: violated, and nothing judged safe;
    # each rule apart: the one broken at every step, the one never broken
    never = Term("never", "speed - 100", kind="hard", limit=0.0)
    result = evaluate("reach", REACH, CostSet(), cfg, 1, device="cpu", guardrails=[always, never])
    s = result.summary()
    assert s["violation_step_rate"]["value"] == 1.0
    assert s["violation_step_rate/always"]["value"] == 1.0
    assert s["violation_step_rate/never"]["value"] == 0.0
    assert s["false_safe_rate"]["value"] is None and s["no_safe_plan_rate"]["value"] == 0.0
    # planning with a hard term that always holds, measured against one that never does:
    # every step was judged safe and every step broke the rule
    result = evaluate(
        "reach", REACH, CostSet(terms=[never]), cfg, 1, device="cpu", guardrails=[always]
    )
    assert result.summary()["false_safe_rate"]["value"] == 1.0


@needs_reach
def test_stop_returns_the_finished_episodes():
    stop = threading.Event()
    result = evaluate(
        "reach",
        REACH,
        CostSet(),
        AgentConfig(search=SMALL),
        10,
        device="cpu",
        progress=lambda done, total: stop.set(),
        stop=stop,
    )
    assert len(result.episodes) == 1 and not result.complete
    assert result.summary()["success_rate"]["value"] in (0.0, 1.0)


@needs_reach
def test_the_experiment_csv_states_the_guard_each_design_ran_with():
    """A calibrated design (delta 0.05, margin over 3 steps, 7 repairs) beside one with
    margin 0: the head says each design's guard, not the first design's margin alone."""
    rule = CostSet(terms=[Term("slow", "speed", kind="hard", limit=0.5)])
    plain = AgentConfig(search=replace(SMALL, repair=7))
    calibrated = replace(plain, delta=0.05, margin_steps=3, margin_signals=("speed",))
    results = {}
    for name, cfg in (("margin 0", plain), ("calibrated", calibrated)):
        stop = threading.Event()  # one episode is enough: the head is the point
        results[name] = evaluate(
            "reach",
            REACH,
            rule,
            cfg,
            5,
            device="cpu",
            progress=lambda d, t, s=stop: s.set(),
            stop=stop,
        )
    head = [ln for ln in experiment_csv(results).splitlines() if ln.startswith("#")]
    assert "# margin: per design" in head and "# delta: per design" in head
    lines = {ln.split(" guard: ")[0]: ln for ln in head if " guard: " in ln}
    calib = lines["# design calibrated"]
    assert "calibrated bound at miss rate 0.05" in calib and "delta 0.05" in calib
    assert "margin steps 3" in calib and "repair 7 (scale)" in calib
    assert "over the first 3 imagined steps on speed only" in calib
    zero = lines["# design margin 0"]
    assert "margin 0;" in zero and "delta 0;" in zero and "repair 7 (scale)" in zero
    # the real steps each rule broke, a column of its own; every row names its design
    rows = list(
        csv.DictReader(ln for ln in experiment_csv(results).splitlines() if not ln.startswith("#"))
    )
    assert {r["design"] for r in rows} == {"margin 0", "calibrated"}
    assert all(r["violation_steps/slow"] == r["violation_steps"] for r in rows)
    # one design, or designs alike: the guard heads the file once
    alone = experiment_csv({"calibrated": results["calibrated"]}, "summary").splitlines()
    assert "# delta: 0.05" in alone and "# margin steps: 3" in alone
    assert "# repair: 7 (scale)" in alone and "# margin: 0" in alone
    assert not [ln for ln in alone if ln.startswith("# design calibrated guard")]


@needs_reach
def test_bad_input_raises_lab_errors():
    cfg = AgentConfig(search=SMALL)
    with pytest.raises(LabError, match="unknown scene"):
        evaluate("moon", REACH, CostSet(), cfg, 1)
    with pytest.raises(LabError, match="reach model"):
        evaluate("kitchen", REACH, CostSet(), cfg, 1)
    bad = CostSet(terms=[Term("fast", "relu(hand_speed - 0.2)")])
    with pytest.raises(LabError, match=r"'fast'.*column"):
        evaluate("reach", REACH, bad, cfg, 1)
    probe_less = CostSet(terms=[Term("far", "dist_goal", kind="hard", limit=1.0)])
    with pytest.raises(LabError, match="the model"):  # the model has no goal-distance probe
        evaluate("reach", REACH, probe_less, cfg, 1)
    with pytest.raises(LabError, match="checkpoint"):
        evaluate("reach", None, CostSet(), cfg, 1)


def cli(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "experiments.evaluate", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


@needs_reach
@pytest.mark.skipif(not (KITCHEN / "config.json").exists(), reason="needs pretrained/kitchen-state")
@pytest.mark.slow
def test_the_command_line_says_what_is_wrong(tmp_path):
    bad = tmp_path / "costs.json"
    bad.write_text("{not json")
    out = cli("--scene", "reach", "--checkpoint", REACH, "--costs", bad, "--episodes", "1")
    assert out.returncode == 2 and "not valid JSON" in out.stderr
    assert "Traceback" not in out.stderr
    out = cli("--scene", "reach", "--checkpoint", KITCHEN, "--episodes", "1")
    assert out.returncode == 2 and "kitchen model" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_command_line_runs_the_oracle_alone(tmp_path):
    out = cli(
        "--scene",
        "reach",
        "--oracle",
        "--episodes",
        "1",
        "--oracle-samples",
        "24",
        "--oracle-horizon",
        "8",
        "--no-progress",
        "--out",
        tmp_path / "run",
    )
    assert out.returncode == 0, out.stderr
    assert "oracle/success_rate" in out.stdout
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["episodes"][0]["agent"] == "oracle" and saved["complete"]
    assert (tmp_path / "run" / "summary.csv").read_text().startswith("metric,value,low,high")


def test_guardrails_in_reality_read_the_episodes_goal():
    """A hard term over the goal is checked in reality against the episode's goal: the
    disc is never exactly at the goal (violated every step) and always within 3 m of it."""
    away = Term("away", "(abs(x - goal_x) + abs(y - goal_y)) > 0", kind="hard")
    near = Term("near", "(abs(x - goal_x) + abs(y - goal_y)) > 3", kind="hard")
    cfg = AgentConfig(search=SMALL)
    tiny = PlannerConfig(samples=8, horizon=4, iterations=1)
    for rule, rate in ((away, 1.0), (near, 0.0)):
        result = evaluate(
            "reach", None, CostSet(), cfg, 1, oracle=True, guardrails=[rule], oracle_search=tiny
        )
        assert result.summary()["oracle/violation_step_rate"]["value"] == rate
    with pytest.raises(LabError, match="goal_block_x"):
        evaluate("reach", None, CostSet(terms=[Term("b", "goal_block_x")]), cfg, 1, oracle=True)


def test_the_push_subgoal_is_zero_behind_the_block_on_the_far_side_from_the_goal():
    from agents.cost import term_names
    from agents.expressions import compile_expression
    from scenes.push import BEHIND_BLOCK, BEHIND_GAP, PushEnv

    env = PushEnv()
    try:
        env.reset(seed=3)
        s, goal = dict(env.signals), np.asarray(env.goal, dtype=float)
    finally:
        env.close()
    fn = compile_expression(BEHIND_BLOCK, term_names(s, PushEnv.TASK_SIGNALS))
    block = np.array([s["block_x"], s["block_y"]])
    u = (goal - block) / np.linalg.norm(goal - block)

    def value(disc):
        env_values = {**s, "x": disc[0], "y": disc[1], "goal_block_x": goal[0]}
        env_values["goal_block_y"] = goal[1]
        return float(fn({k: torch.tensor([[float(v)]]) for k, v in env_values.items()}))

    assert value(block - BEHIND_GAP * u) == pytest.approx(0.0, abs=1e-5)
    assert value(block + BEHIND_GAP * u) == pytest.approx(2 * BEHIND_GAP, abs=1e-4)  # in front
    disc = np.array([s["x"], s["y"]])
    assert value(disc) == pytest.approx(np.linalg.norm(disc - (block - BEHIND_GAP * u)), abs=1e-4)


def test_the_wall_subgoal_leads_to_the_door_only_while_the_goal_is_in_the_other_room():
    from agents.cost import term_names
    from agents.expressions import compile_expression
    from scenes.wall import DOOR_Y, THROUGH_DOOR, WallEnv

    fn = compile_expression(THROUGH_DOOR, term_names(["x", "y"], WallEnv.TASK_SIGNALS))

    def value(x, y, goal_x):
        values = {"x": x, "y": y, "goal_x": goal_x, "goal_y": -0.5}
        return float(fn({k: torch.tensor([[float(v)]]) for k, v in values.items()}))

    assert value(0.5, -0.5, 0.4) == 0.0  # in the goal's room: the goal term alone
    assert value(-0.001, DOOR_Y, 0.4) == pytest.approx(1.0, abs=1e-2)  # in the door: 1 to go
    assert value(-0.5, -0.3, 0.4) == pytest.approx(np.hypot(0.5, 2 * (DOOR_Y + 0.3)) + 1)
    assert value(0.5, -0.3, -0.4) == pytest.approx(np.hypot(0.5, 2 * (DOOR_Y + 0.3)) + 1)


@pytest.mark.skipif(
    not (ROOT / "pretrained" / "wall-state" / "config.json").exists(),
    reason="pretrained/wall-state is made by ./lab pretrain",
)
def test_the_shipped_wall_model_goes_through_the_door_with_the_plan_pages_subgoal():
    from app.home import DEFAULT_PRESET, preset_costs

    costs = preset_costs("wall")[DEFAULT_PRESET["wall"]]
    result = evaluate("wall", ROOT / "pretrained" / "wall-state", costs, AgentConfig(), 2, seed=0)
    for episode in result.episodes:  # every start and goal are in different rooms
        assert episode["success"], episode
