"""Guardrail science: rules that do not freeze the agent, conformal bounds,
stress tests and Ray, on analytic fixtures and real episodes."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

import scenes
from agents.agent import STUCK_STEPS, AgentConfig, blocking_term, margins_for, stuck
from agents.cost import Cost, CostSet, Term
from agents.planners import CEM_300, PLANNERS, PlannerConfig, shift
from common.errors import LabError
from experiments.calibrate import bounds_table, conformal_bound, coverage, episode_bound
from experiments.evaluate import evaluate
from experiments.stress import Search, StressResult, stress
from worldmodels.checkpoint import load_checkpoint, update_config

REACH = "pretrained/reach-state"


class VelocityModel:
    """A point whose velocity is the action: latents (x, y, vx, vy); x += 0.1 a each step.
    The probes read the position and the speed exactly."""

    def rollout(self, s0, actions):
        pos = s0[:, None, :2] + 0.1 * torch.cumsum(actions, dim=1)
        return torch.cat([pos, actions], dim=-1)  # (N, H, 4)

    def probe(self, s, names=None):
        return {"x": s[..., 0], "y": s[..., 1], "speed": s[..., 2:].norm(dim=-1)}


# A rule that binds in part of the space: past x = 0.3, at most 0.3 (a in [-1, 1]).
SLOW_PAST = Term("slow past 0.3", "relu(speed - 0.3) * (x > 0.3)", "hard")


PLAIN = {"noise_beta": 0.0, "keep": 0.0, "decay": 1.0}  # plain CEM, not the iCEM default


def drive(repair: int, steps: int = 40, seed: int = 0, **search) -> tuple[float, list]:
    """The receding-horizon loop on the fixture (the model is reality): final x, and what
    blocked the cheapest plan at each step."""
    costs = CostSet(terms=[SLOW_PAST])
    cost = Cost(costs, ["x", "y", "speed"], ["x", "y"])
    search = {"samples": 200, "elites": 20, **search}
    cfg = PlannerConfig(horizon=12, iterations=3, repair=repair, **search)
    planner = PLANNERS["cem"](cfg, 2)
    g = torch.Generator().manual_seed(seed)
    s, warm, blocked = torch.zeros(4), None, []
    goal = torch.tensor([1.0, 0.0])
    for _ in range(steps):
        rec = planner.plan(VelocityModel(), cost, s, goal, None, g, warm)
        a = rec.actions[0]
        s = torch.cat([s[:2] + 0.1 * a, a])
        warm = shift(rec.actions)
        blocked.append(blocking_term(rec, cost))
    return float(s[0]), blocked


def test_a_rule_that_binds_in_part_of_the_space_freezes_plain_cem_and_repair_frees_it():
    frozen, blocked = drive(repair=0, **PLAIN)
    moved, _ = drive(repair=30, **PLAIN)
    assert frozen < 0.45  # hovering at the edge of the slow zone
    assert moved > 0.8  # through the zone, slowly, to the goal
    assert "slow past 0.3" in blocked[-10:]  # the page can say which rule holds it back


def test_icem_alone_does_not_free_it_and_repair_does_at_the_default_n():
    """Smooth noise and kept elites do not find the slow plans either; the repaired
    copies, samples of the next round, do, at the default search's N."""
    default = {"samples": PlannerConfig.samples, "elites": 0}
    frozen = [drive(repair=0, seed=seed, **default)[0] for seed in range(4)]
    moved = [drive(repair=30, seed=seed, **default)[0] for seed in range(4)]
    assert sum(frozen) / 4 < 0.5  # 0.35, 0.61, 0.29, 0.28 here
    assert min(moved) > 0.8  # 0.85 to 0.89


def test_stuck_names_the_rule_when_progress_stops():
    moving = [(1.0 - 0.05 * i, None) for i in range(STUCK_STEPS)]
    assert stuck(moving) is None
    held = [(0.6, "slow past 0.3" if i % 3 else None) for i in range(STUCK_STEPS)]
    assert stuck(held) == "slow past 0.3"
    assert stuck(held[:-1]) is None  # not for long enough yet
    free = [(0.6, None)] * STUCK_STEPS  # no progress, but no rule in the way
    assert stuck(free) is None


def test_conformal_bound_is_the_known_order_statistic():
    gaps = np.arange(1.0, 101.0)[:, None]  # 1..100
    assert conformal_bound(gaps, 0.1)[0] == 91.0  # ceil(101 * 0.9) = 91st smallest
    assert conformal_bound(gaps, 0.5)[0] == 51.0
    assert math.isinf(conformal_bound(gaps, 0.001)[0])  # needs the 101st of 100
    # missing gaps (NaN) are left out, column by column
    two = np.stack([np.arange(1.0, 101.0), np.r_[np.arange(1.0, 51.0), [np.nan] * 50]], 1)
    assert list(conformal_bound(two, 0.1)) == [91.0, 46.0]  # ceil(51 * 0.9) = 46
    with pytest.raises(LabError):
        conformal_bound(gaps, 1.5)


def test_the_bound_counts_episodes_not_steps():
    """Five long episodes of small gaps and four one-step episodes of large ones: pooled
    over steps the large gaps are 4 of 504; counted in episodes, 4 of 9."""
    episodes = [np.ones((100, 1))] * 5 + [np.full((1, 1), 5.0)] * 4
    assert episode_bound(episodes, 0.6)[0] == 1.0  # (1 - 0.6) * 10/9 = 0.44 <= 5/9
    assert episode_bound(episodes, 0.4)[0] == 5.0  # 0.6 * 10/9 = 0.67 > 5/9
    assert conformal_bound(np.concatenate(episodes), 0.4)[0] == 1.0  # the steps' answer
    ten = [np.arange(1.0, 11.0)[:, None]] * 19  # each episode's gaps 1..10
    assert episode_bound(ten, 0.5)[0] == 6.0  # 0.5 * 20/19 = 0.526 -> 6 of 10
    assert math.isinf(episode_bound(ten[:4], 0.1)[0])  # 0.9 * 5/4 > 1: too few episodes


def test_conformal_bound_covers_fresh_episodes_at_the_promised_rate():
    rng = np.random.default_rng(0)

    def episodes(n):  # each episode has its own scale: steps of one are alike
        return [
            np.abs(rng.standard_normal((int(rng.integers(5, 40)), 3, 2)))
            * rng.uniform(0.5, 1.5)
            * [1.0, 0.1]
            for _ in range(n)
        ]

    table = bounds_table(episodes(400), ["a", "b"], deltas=(0.05,))[0.05]
    cov = coverage(episodes(2000), table, ["a", "b"])
    assert all(0.935 <= c <= 0.965 for c in cov.values()), cov


def test_cem_finds_a_planted_failure_region_faster_than_random():
    centre = np.array([0.8, 0.2, 0.7, 0.3])

    def found(method: str) -> int:
        search, n = Search(method, 4, seed=1), 0
        for _ in range(10):
            u = search.propose(20)
            d = np.linalg.norm(u - centre, axis=1)
            n += int((d < 0.2).sum())  # the failures: a small ball, 0.3 % of the cube
            search.tell(u, -d)  # closer is worse for the design
        return n

    assert found("cem") >= 3 * max(found("random"), 1)


def test_a_calibrated_margin_is_read_from_the_checkpoint_and_checked(tmp_path):
    import shutil

    folder = tmp_path / "reach"
    shutil.copytree(REACH, folder)
    update_config(folder, probe_conformal=None)  # never calibrated
    model, _ = load_checkpoint(folder, "cpu")
    with pytest.raises(LabError, match="calibrate"):
        margins_for(model, AgentConfig(delta=0.05), "cpu")
    names = list(model.signal_names)
    bounds = {n: [0.01 * (h + 1) for h in range(16)] for n in names}
    update_config(folder, probe_conformal={"deltas": [0.05], "bounds": [bounds]})
    model, _ = load_checkpoint(folder, "cpu")
    m = margins_for(model, AgentConfig(delta=0.05), "cpu")
    assert float(m["x"][3]) == pytest.approx(0.04)
    # over the first two imagined steps only: then none (past the curve's end too)
    m = margins_for(model, AgentConfig(delta=0.05, margin_steps=2), "cpu")
    assert m["x"].tolist() == pytest.approx([0.01, 0.02, 0.0])
    # on some signals only: the others are planned on as imagined
    m = margins_for(model, AgentConfig(delta=0.05, margin_signals=(names[0],)), "cpu")
    assert list(m) == [names[0]]
    with pytest.raises(LabError, match="no such signal"):
        margins_for(model, AgentConfig(delta=0.05, margin_signals=("nose",)), "cpu")
    with pytest.raises(LabError, match=r"choose 0\.05"):
        margins_for(model, AgentConfig(delta=0.1), "cpu")
    # too few episodes for a delta leave +inf: refused with how many it needs
    inf = {n: [None] * 16 for n in names}
    update_config(folder, probe_conformal={"deltas": [0.01, 0.05], "bounds": [inf, bounds]})
    model, _ = load_checkpoint(folder, "cpu")
    with pytest.raises(LabError, match="at least 99 calibration episodes"):
        margins_for(model, AgentConfig(delta=0.01), "cpu")
    update_config(folder, probe_conformal={"deltas": [0.05], "bounds": [{"x": [1.0]}]})
    with pytest.raises(LabError, match="probe_conformal"):
        load_checkpoint(folder, "cpu")


def test_scenes_take_stress_parameters_as_reset_options():
    for key in ("reach", "push", "kitchen"):
        cls = scenes.scene_class(key)
        values = {name: (lo + hi) / 2 for name, lo, hi in cls.STRESS_PARAMS}
        env = cls(pixels=False)
        try:
            env.reset(seed=3, options=cls.stress_options(values))
            sig = env.signals
            if key == "kitchen":
                assert sig["person_x"] == pytest.approx(values["person_x"])
                assert sig["hand_x"] == pytest.approx(values["start_x"], abs=0.03)
            else:
                assert (sig["x"], sig["y"]) == pytest.approx((0.0, 0.0), abs=0.35)
            with pytest.raises(LabError):
                env.reset(seed=3, options={"start": [5.0, 5.0, 5.0][: len(env.TASK_SIGNALS)]})
        finally:
            env.close()
    env = scenes.scene_class("kitchen")(pixels=False)
    try:
        with pytest.raises(LabError, match="dir"):
            env.reset(seed=0, options={"person": {"dir": 0.5}})
    finally:
        env.close()
    env = scenes.scene_class("wall")(pixels=False)
    try:  # a goal in the dividing wall cannot be reached: refused, and a search redraws
        with pytest.raises(LabError, match="inside or against a wall"):
            env.reset(seed=0, options={"goal": [0.0, -0.5]})
    finally:
        env.close()


@pytest.mark.slow
def test_a_stress_test_of_real_episodes_keeps_replayable_failures(tmp_path):
    rule = Term("barely move", "relu(speed - 0.05)", "hard")  # any real motion breaks it
    costs = CostSet(terms=[rule])
    seen = []
    search = replace(CEM_300, samples=60, elites=0)  # plain: iCEM at N = 60 broke nothing
    r = stress(
        "reach",
        REACH,
        costs,
        AgentConfig(search=search),
        4,
        population=2,
        device="cpu",
        progress=lambda res: seen.append((len(res.episodes), len(res.failures))),
    )
    assert r.complete and len(r.episodes) == 4
    # each episode, and so each failure, is published as it ends, not a generation later
    assert [n for n, _ in seen] == [1, 2, 3, 4], seen
    assert [k for _, k in seen] == [sum(e["excess"] > 0 for e in r.episodes[:n]) for n, _ in seen]
    assert r.failures and r.failures[0]["excess"] >= r.failures[-1]["excess"] > 0
    # the failures as a CSV: headed by what was stressed and how, worst first
    text = r.failures_csv()
    head = [ln for ln in text.splitlines() if ln.startswith("#")]
    assert "# scene: reach" in head and "# method: cem" in head and "# budget: 4" in head
    assert f"# failures: {len(r.failures)}" in head and "# delta: 0" in head
    assert "# design: barely move (hard): relu(speed - 0.05) <= 0" in head
    rows = list(csv.DictReader(ln for ln in text.splitlines() if not ln.startswith("#")))
    assert len(rows) == len(r.failures)
    assert [float(x["excess"]) for x in rows] == pytest.approx([f["excess"] for f in r.failures])
    assert json.loads(rows[0]["options"]) == r.failures[0]["options"]
    assert {p[0] for p in scenes.scene_class("reach").STRESS_PARAMS} <= set(rows[0])
    r.save(tmp_path)
    back = StressResult.load(tmp_path / "result.json")
    f = back.failures[0]
    # the failure replays: the same seed and options give the same episode
    again = evaluate(
        "reach",
        REACH,
        costs,
        AgentConfig(search=search),
        1,
        device="cpu",
        options=f["options"],
        seed=0,
    )
    env = scenes.scene_class("reach")(pixels=False)
    try:
        env.reset(seed=f["seed"], options=f["options"])
        assert [env.signals["x"], env.signals["y"]] == pytest.approx(f["options"]["start"])
    finally:
        env.close()
    assert again.episodes[0]["violation_steps"] > 0
    with pytest.raises(LabError, match="no enabled hard term"):
        stress("reach", REACH, CostSet(), AgentConfig(), 2, device="cpu")
    with pytest.raises(LabError, match="reach model"):  # before any episode
        stress("kitchen", REACH, CostSet(terms=[rule]), AgentConfig(), 2, device="cpu")
    for bad in ({"format": "other"}, [1, 2], {**json.loads(back.to_json()), "episodes": [{}]}):
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(LabError):
            StressResult.load(tmp_path / "bad.json")


@pytest.mark.slow
def test_episodes_on_ray_are_the_episodes_run_here():
    pytest.importorskip("ray")
    costs = CostSet(terms=[Term("slow", "relu(speed - 0.3)", "hard")])
    cfg = AgentConfig(search=PlannerConfig(samples=60))
    here = evaluate("reach", REACH, costs, cfg, 3, device="cpu")
    errors = []
    there = evaluate("reach", REACH, costs, cfg, 3, device="cpu", ray="local", errors=errors)

    def strip(eps):
        return [{k: v for k, v in e.items() if k != "plan_ms"} for e in eps]

    assert strip(here.episodes) == strip(there.episodes)
    assert len(errors) == 3 and errors[0].shape[1:] == (16, len(here.probe_by_signal()))
