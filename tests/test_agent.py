"""The receding-horizon agent with a real scene and the shipped Reach model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import scenes
from agents.agent import Agent, AgentConfig
from agents.cost import CostSet, Term
from agents.planners import PlannerConfig
from common.errors import LabError
from worldmodels import load_checkpoint
from worldmodels.model import ModelConfig, WorldModel

ROOT = Path(__file__).resolve().parents[1]
REACH = ROOT / "pretrained" / "reach-state"

pytestmark = pytest.mark.skipif(
    not (REACH / "config.json").exists(), reason="pretrained/reach-state is made by ./lab pretrain"
)


@pytest.fixture(scope="module")
def model():
    m, _ = load_checkpoint(REACH)
    return m


def make(model, costs=None, **kw):
    search = PlannerConfig(samples=200, horizon=16, iterations=3)
    cfg = AgentConfig(search=search, **kw)
    scene = scenes.scene_class("reach")()
    return Agent(model, scene, costs or CostSet(), cfg, seed=0)


def test_kept_elites_ride_on_to_the_next_plan_shifted_a_step(model):
    search = PlannerConfig(samples=100, horizon=16, iterations=2, elites=30, keep=0.3)
    agent = Agent(model, scenes.scene_class("reach")(), CostSet(), AgentConfig(search=search))
    agent.reset(seed=3)
    first = agent.step().plan
    assert first.kept.shape == (9, 16, 2)  # 0.3 of the 30 elites
    assert torch.equal(agent.kept[:, :-1], first.kept[:, 1:])  # shifted, as the warm start
    second = agent.step().plan
    # the first round's last places held them: the plan ranks them with the rest
    assert second.kept is not None and agent.kept.shape == (9, 16, 2)
    agent.reset(seed=4)
    assert agent.kept is None  # a new episode starts fresh


@pytest.mark.slow
def test_the_agent_reaches_goals_in_reach(model):
    agent = make(model)
    wins = 0
    for seed in range(5):
        agent.reset(seed=100 + seed)
        while not agent.done:
            rec = agent.step()
        wins += rec.is_success
    assert wins >= 4, f"{wins}/5"


def test_a_step_records_reality_and_imagination(model):
    agent = make(model)
    agent.reset(seed=3)
    rec = agent.step()
    assert rec.frame.shape == (64, 64, 3) and set(rec.signals) >= {"x", "y", "dist_goal"}
    assert set(rec.imagined) == set(model.signal_names)
    assert rec.imagined["x"].shape == (16,)
    assert rec.imagined_frames.shape == (16, 64, 64, 3)
    last = agent.planner.sizes()[-1]  # the last round's samples (iCEM's decay)
    assert rec.plan.samples.shape == (last, 16, 2) and rec.plan.feasible.all()
    assert rec.action.shape == (2,) and np.all(np.abs(rec.action) <= 1)
    # one step of imagination agrees with what really happened, roughly
    real = np.array([rec.next_signals["x"], rec.next_signals["y"]])
    imagined = np.array([rec.imagined["x"][0], rec.imagined["y"][0]])
    assert np.linalg.norm(real - imagined) < 0.1


@pytest.mark.slow
def test_editing_the_cost_live_keeps_the_last_good_term(model):
    agent = make(model, CostSet(terms=[Term("slow", "relu(speed - 0.2)", weight=5.0)]))
    agent.reset(seed=4)
    agent.step()
    errors = agent.set_costs(CostSet(terms=[Term("slow", "relu(speed - ", weight=5.0)]))
    assert errors["slow"].column == 5
    rec = agent.step()  # still planning, with the old term
    assert "slow" in rec.plan.terms
    errors = agent.set_costs(CostSet(terms=[Term("slow", "relu(speed - 0.1)", weight=5.0)]))
    assert not errors and agent.cost.costs.terms[0].expression == "relu(speed - 0.1)"


@pytest.mark.slow
def test_the_stop_fallback_stops_when_nothing_is_safe(model):
    never = Term("never", "1", kind="hard", limit=0.0)
    agent = make(model, CostSet(terms=[never]), fallback="stop")
    agent.reset(seed=5)
    rec = agent.step()
    assert rec.plan.none_feasible and rec.stopped and np.all(rec.action == 0)
    moving = make(model, CostSet(terms=[never]), fallback="least_violating")
    moving.reset(seed=5)
    assert not np.all(moving.step().action == 0)


def test_bad_settings_get_clear_errors(model):
    with pytest.raises(LabError, match="unknown planner"):
        make(model, planner="astar")
    with pytest.raises(LabError, match="fallback"):
        make(model, fallback="panic")
    agent = make(model)
    with pytest.raises(LabError, match="reset"):
        agent.step()


def test_a_margin_plans_against_the_models_measured_error(model):
    assert set(model.probe_rmse) == set(model.signal_names)  # shipped with it (./lab calibrate)
    plain = make(model)
    plain.reset(seed=7)
    edge = Term("edge", "x", kind="hard", limit=plain.scene.signals["x"] + 0.15)
    plain.set_costs(CostSet(terms=[edge]))
    wide = make(model, CostSet(terms=[edge]), margin=2)
    assert wide.cost.margins["x"][0] == pytest.approx(2 * model.probe_rmse["x"][0])
    assert not plain.cost.margins
    # the same imagined futures, judged with room for the model's error
    actions = torch.rand(500, 16, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        s0 = model.encode(plain.scene.observation).expand(500, -1)
        latents = model.rollout(s0, actions)
        signals = model.probe(latents)
    p = plain.cost.evaluate(latents, signals, None, plain.goal).feasible
    w = wide.cost.evaluate(latents, signals, None, plain.goal).feasible
    assert 0 < int(w.sum()) < int(p.sum()) < 500 and not (w & ~p).any()

    bare = WorldModel(model.cfg)  # never measured
    with pytest.raises(LabError, match="calibrate"):
        make(bare, margin=1.0)
    make(bare, margin=0.0)  # no margin asked: nothing to measure
    for bad in (-1.0, float("nan"), 50.0):
        with pytest.raises(LabError, match="margin"):
            make(model, margin=bad)


@pytest.mark.slow
@pytest.mark.parametrize("planner", ["mppi", "gd"])
def test_the_other_planners_drive_the_agent(model, planner):
    agent = make(model, planner=planner)
    agent.reset(seed=6)
    start = agent.scene.signals["dist_goal"]
    for _ in range(10):
        agent.step()
    assert agent.scene.signals["dist_goal"] < start
    assert torch.is_tensor(agent.warm) and agent.warm.shape == (16, 2)


def test_a_two_frame_pixel_model_is_given_the_last_frame_too():
    cfg = ModelConfig(
        obs="pixels", frames=2, last_action=True, latent_dim=16, signals=("x", "y"), decoder=False
    )
    pixel_model = WorldModel(cfg)
    agent = make(pixel_model)
    agent.reset(seed=4)
    first = agent.scene.observation["pixels"]
    # The first step sees the first frame twice (the scene starts at rest) ...
    assert np.array_equal(agent._with_memory(agent.scene.observation)["pixels"][0, 0], first)
    agent.step()
    rec = agent.step()
    second = agent.memory[-1]
    stack = agent._with_memory(agent.scene.observation)["pixels"]
    # ... later ones the frame before the current one, oldest first.
    assert stack.shape == (1, 2, 64, 64, 3) and len(agent.memory) == 1
    assert np.array_equal(stack[0, 0], second) and not np.array_equal(second, first)
    assert np.array_equal(stack[0, 1], agent.scene.observation["pixels"])
    assert np.array_equal(agent.last_action, rec.action)  # the efference copy
    agent.reset(seed=5)
    assert agent.memory == [] and not agent.last_action.any()
