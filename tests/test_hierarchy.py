"""The learned high level (worldmodels/highlevel.py) and the two-level agent
(agents/hierarchy.py): trained for real on a little Wall exploration data beside the
shipped Wall model, saved, resumed exactly, refused for another model, and planning."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import scenes
from agents.agent import Agent, AgentConfig
from agents.cost import CostSet
from agents.evaluate import evaluate
from agents.hierarchy import HierarchyConfig
from agents.planners import PlannerConfig
from scenes import LabError
from scenes.collect import CollectConfig, collect
from worldmodels.checkpoint import load_checkpoint
from worldmodels.highlevel import DOUBT, HighConfig, HighTrainer, MacroModel, load_high

ROOT = Path(__file__).resolve().parents[1]
WALL = ROOT / "pretrained" / "wall-state"
SMALL = dict(steps=300, batch=128, save_every=100, members=2, hidden=64, progress=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("high") / "data"
    collect(CollectConfig(scene="wall", out=str(out), episodes=6, workers=1, pixels=False,
                          progress=False))  # fmt: skip
    return out


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("high") / "high-wall"
    trainer = HighTrainer(HighConfig(checkpoint=str(WALL), data=str(data), out=str(out), **SMALL))
    before = trainer.evaluate()
    seen = []
    figures = trainer.run(progress=lambda done, total, f: seen.append(done))
    return out, before, figures, seen


def test_training_learns_the_macro_steps(trained):
    out, before, figures, seen = trained
    assert seen == [100, 200, 300] and figures["step"] == 300
    # untrained, it predicts "nothing moves": an error of about one k-step move
    assert before["val_error_first"] > 0.5
    assert figures["val_error_first"] < 0.5 * before["val_error_first"]
    assert figures["val_error_last"] < before["val_error_last"]
    meta = json.loads((out / "high.json").read_text())
    assert meta["shape"]["members"] == 2 and meta["figures"] == figures


def test_training_resumes_exactly(data, trained, tmp_path):
    out = tmp_path / "resumed"
    first = HighTrainer(HighConfig(checkpoint=str(WALL), data=str(data), out=str(out),
                                   **{**SMALL, "steps": 200}))  # fmt: skip
    first.run()
    again = HighTrainer(HighConfig(checkpoint=str(WALL), data=str(data), out=str(out), **SMALL))
    assert again.step == 200
    again.run()
    straight = load_high(trained[0], WALL, torch.device("cpu"))
    for (name, a), b in zip(again.high.state_dict().items(), straight.state_dict().values(),
                            strict=True):  # fmt: skip
        assert torch.equal(a, b), name
    with pytest.raises(LabError, match="other settings"):
        HighTrainer(HighConfig(checkpoint=str(WALL), data=str(data), out=str(out),
                               **{**SMALL, "k": 4}))  # fmt: skip


def test_a_foreign_or_broken_high_level_is_refused(trained, tmp_path):
    out = trained[0]
    with pytest.raises(LabError, match="trained on the world model"):
        load_high(out, ROOT / "pretrained" / "reach-state", torch.device("cpu"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "high.json").write_text((out / "high.json").read_text())
    (broken / "high.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(LabError, match="broken high level"):
        load_high(broken, WALL, torch.device("cpu"))
    with pytest.raises(LabError):
        load_high(tmp_path / "nothing", WALL, torch.device("cpu"))


def test_the_ensemble_reports_its_doubt(trained):
    model, _ = load_checkpoint(WALL)
    high = load_high(trained[0], WALL, torch.device("cpu"))
    macro = MacroModel(high, model)
    s0 = torch.zeros(5, model.cfg.latent_dim)
    u = torch.rand(5, 3, high.shape.code) * 2 - 1
    latents, signals = macro.imagine(s0, u, ["x", DOUBT])
    assert latents.shape == (5, 3, model.cfg.latent_dim)
    assert signals["x"].shape == signals[DOUBT].shape == (5, 3)
    assert bool((signals[DOUBT] > 0).all())  # two members never agree exactly
    assert torch.allclose(latents, high.rollouts(s0, high.from_box(u)).mean(0))


def test_the_agent_plans_to_the_high_levels_subgoal(trained):
    model, _ = load_checkpoint(WALL)
    high = load_high(trained[0], WALL, torch.device("cpu"))
    scene = scenes.make("wall").unwrapped
    try:
        h = HierarchyConfig(chunks=4, samples=64, iterations=2, doubt=1.0)
        cfg = AgentConfig(decode=False, search=PlannerConfig(samples=64, iterations=2),
                          hierarchy=h)  # fmt: skip
        agent = Agent(model, scene, CostSet(), cfg, high=high)
        agent.reset(seed=2)
        fresh = []
        for _ in range(10):
            thought = agent.think()
            top = thought.plan.info["high"]
            fresh.append(top.info["fresh"])
            assert top.latents.shape == (4, model.cfg.latent_dim) and "model doubt" in top.terms
            assert thought.plan.actions.shape == (h.horizon, 2)  # the low level's own horizon
            # the low level's task term is the steps to go to the high level's first latent
            with torch.no_grad():
                want = model.goal_distance(thought.plan.latents, top.latents[0])
            assert torch.allclose(thought.plan.terms["task"][thought.plan.chosen], want, atol=1e-4)
            agent.step(thought)
        assert fresh == [True] + [False] * 7 + [True, False]  # replanned every k = 8 steps
        with pytest.raises(LabError, match="needs a high level"):
            Agent(model, scene, CostSet(), cfg)
        with pytest.raises(LabError, match="actor must be the planner"):
            Agent(model, scene, CostSet(), replace(cfg, actor="policy"), high=high, policy=object())
    finally:
        scene.close()


def test_evaluation_runs_the_hierarchy(trained):
    h = HierarchyConfig(chunks=4, samples=64, iterations=2)
    cfg = AgentConfig(decode=False, search=PlannerConfig(samples=64, iterations=2), hierarchy=h)
    result = evaluate("wall", WALL, CostSet(), cfg, 1, seed=0, device="cpu", high=trained[0])
    assert result.complete and result.settings["hierarchy"]["chunks"] == 4
    assert result.episodes[0]["steps"] > 0
    with pytest.raises(LabError, match="needs --high"):
        evaluate("wall", WALL, CostSet(), cfg, 1, device="cpu")
