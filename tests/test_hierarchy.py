"""The learned high level (worldmodels/highlevel.py) and the two-level agent
(agents/hierarchy.py): trained for real on a little Wall exploration data beside the
shipped Wall model, saved, resumed exactly, refused for another model, and planning."""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import scenes
from agents.agent import Agent, AgentConfig
from agents.cost import CostSet
from agents.hierarchy import MIXED_LATENT, WALK, WALKS, HierarchyConfig, body_distance, walk_for
from agents.planners import PlannerConfig
from common.errors import LabError
from experiments.evaluate import evaluate
from scenes.collect import CollectConfig, collect
from worldmodels.checkpoint import load_checkpoint
from worldmodels.highlevel import DOUBT, HighConfig, HighTrainer, MacroModel, load_high

pytestmark = pytest.mark.slow  # collects data and trains high levels

ROOT = Path(__file__).resolve().parents[1]
WALL = ROOT / "pretrained" / "wall-state"
SMALL = dict(
    steps=300, batch=128, save_every=100, members=2, hidden=64, subgoal=True, progress=False
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("high") / "data"
    collect(
        CollectConfig(
            scene="wall", out=str(out), episodes=6, workers=1, pixels=False, progress=False
        )
    )
    return out


@contextmanager
def wall_agent(trained, h: HierarchyConfig, seed: int):
    """The shipped Wall model planning under ``h`` with the trained high level (64 samples,
    2 rounds), reset to ``seed``: (model, high, agent); its scene closed after."""
    model, _ = load_checkpoint(WALL)
    high = load_high(trained[0], WALL, torch.device("cpu"))
    scene = scenes.make("wall").unwrapped
    try:
        cfg = AgentConfig(decode=False, search=PlannerConfig(samples=64, iterations=2), hierarchy=h)
        agent = Agent(model, scene, CostSet(), cfg, high=high)
        agent.reset(seed=seed)
        yield model, high, agent
    finally:
        scene.close()


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
    # the subgoal policy's proposals come nearer the goal (in steps) than where it stands
    assert figures["val_subgoal_gain"] > max(1.0, before["val_subgoal_gain"] + 0.5)
    meta = json.loads((out / "high.json").read_text())
    assert meta["shape"]["members"] == 2 and meta["figures"] == figures


def test_training_resumes_exactly(data, trained, tmp_path):
    out = tmp_path / "resumed"
    first = HighTrainer(
        HighConfig(checkpoint=str(WALL), data=str(data), out=str(out), **{**SMALL, "steps": 200})
    )
    first.run()
    again = HighTrainer(HighConfig(checkpoint=str(WALL), data=str(data), out=str(out), **SMALL))
    assert again.step == 200
    again.run()
    straight = load_high(trained[0], WALL, torch.device("cpu"))
    for (name, a), b in zip(
        again.high.state_dict().items(), straight.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    with pytest.raises(LabError, match="other settings"):
        HighTrainer(
            HighConfig(checkpoint=str(WALL), data=str(data), out=str(out), **{**SMALL, "k": 4})
        )


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
        h = HierarchyConfig(
            method="plan",
            chunks=4,
            samples=64,
            iterations=2,
            doubt=1.0,
            subgoal="steps",
            beside_goal=0.0,
        )
        cfg = AgentConfig(decode=False, search=PlannerConfig(samples=64, iterations=2), hierarchy=h)
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


def test_the_subgoal_policy_proposes_every_step(trained):
    with wall_agent(trained, HierarchyConfig(method="policy", chunks=5), 2) as (model, high, agent):
        for _ in range(3):
            thought = agent.think()
            top = thought.plan.info["high"]
            assert top.info["fresh"] and top.latents.shape == (5, model.cfg.latent_dim)
            s0 = model.encode(agent.scene.observation)
            with torch.no_grad():
                want = high.propose(s0, agent.goal_latent[None])[0]
            assert torch.allclose(top.latents[0], want, atol=1e-5)
            agent.step(thought)


def test_the_low_level_can_keep_the_goal_beside_its_subgoal(trained):
    """``beside_goal``: the low level's task stays the goal's probed signals, and the
    distance to the subgoal (``mixed``: steps to go plus the plain latent distance) is a
    term beside them at that weight."""
    h = HierarchyConfig(method="policy", beside_goal=0.05, subgoal="mixed")
    with wall_agent(trained, h, 2) as (model, _, agent):
        plan = agent.think().plan
        latents, chosen = plan.latents, plan.chosen
        with torch.no_grad():
            probed = model.probe(latents, ["x", "y"])
            goal = torch.linalg.vector_norm(
                torch.stack([probed["x"], probed["y"]], -1) - agent.goal, dim=-1
            )
            sub = plan.info["high"].latents[0]
            plain = torch.linalg.vector_norm(latents - sub, dim=-1)
            subgoal = 0.05 * (model.goal_distance(latents, sub) + MIXED_LATENT * plain)
        assert torch.allclose(plan.terms["task"][chosen], goal, atol=1e-4)
        assert torch.allclose(plan.terms["subgoal"][chosen], subgoal, atol=1e-4)


def test_the_walk_to_the_subgoal_is_the_scenes_unless_set():
    """What ``HierarchyConfig`` leaves open (the subgoal distance, ``beside_goal``) comes
    from the scene the high level was learned on; what it sets is kept."""
    for scene, (subgoal, beside) in WALKS.items():
        cfg = walk_for(HierarchyConfig(), scene)
        assert (cfg.subgoal, cfg.beside_goal) == (subgoal, beside)
    assert walk_for(HierarchyConfig(), "reach").subgoal == WALK[0]
    kept = walk_for(HierarchyConfig(subgoal="steps", beside_goal=0.0), "push")
    assert (kept.subgoal, kept.beside_goal) == ("steps", 0.0)


def test_on_wall_the_low_level_walks_to_where_the_subgoal_puts_the_disc(trained):
    """Left to the scene, Wall's low level keeps the goal's x-y term and, beside it at
    ``WALKS["wall"]``'s weight, the metres between the disc's probed x-y on each imagined
    latent and on the subgoal."""
    with wall_agent(trained, HierarchyConfig(method="policy"), 3) as (model, _, agent):
        assert (agent.high.cfg.subgoal, agent.high.cfg.beside_goal) == WALKS["wall"]
        plan = agent.think().plan
        latents, chosen, sub = plan.latents, plan.chosen, plan.info["high"].latents[0]
        with torch.no_grad():
            here, there = model.probe(latents, ["x", "y"]), model.probe(sub[None], ["x", "y"])
            metres = torch.hypot(here["x"] - there["x"], here["y"] - there["y"])
        want = WALKS["wall"][1] * metres
        assert torch.allclose(plan.terms["subgoal"][chosen], want, atol=1e-4)
    kitchen, _ = load_checkpoint(ROOT / "pretrained" / "kitchen-state")
    with pytest.raises(LabError, match="probed x and y"):
        body_distance(kitchen)  # its probes read the hand and the person, no "x"


def test_a_scripted_high_level_hands_down_the_scenes_own_way(trained):
    """The diagnostic ``scripted`` high level: its subgoal is where the scene's scripted
    controller is k steps on, and the real scene is put back exactly after it looked."""
    h = HierarchyConfig(method="scripted", chunks=2)
    twin = scenes.make("wall").unwrapped
    try:
        with wall_agent(trained, h, 4) as (model, high, agent):
            scene = agent.scene
            twin.reset(seed=4)
            before = scene.observation["state"].copy()
            top = agent.think().plan.info["high"]
            assert np.array_equal(scene.observation["state"], before)  # put back
            for _ in range(high.shape.k):
                twin.step(twin.scripted_action())
            obs = {**twin.observation, "last_action": np.zeros(2, np.float32)}
            with torch.no_grad():
                want = model.encode(obs)[0]
            assert top.latents.shape == (2, model.cfg.latent_dim)
            assert torch.allclose(top.latents[0], want, atol=1e-5)
            record = agent.step()
            assert record.t == 0 and scene.elapsed_steps == 1
            with pytest.raises(LabError, match="scripted"):
                Agent(
                    model,
                    scene,
                    CostSet(),
                    replace(agent.cfg, hierarchy=replace(h, method="oracle")),
                    high=high,
                )
    finally:
        twin.close()


def test_the_subgoal_policy_can_learn_from_goals_episodes_reached(data, tmp_path):
    """``reached``: examples from the episodes that reached their own goal, each aimed at
    the row that first counted as reaching it, at least k steps on in the same episode."""
    from scenes.dataset import Dataset

    cfg = HighConfig(
        checkpoint=str(WALL),
        data=str(data),
        out=str(tmp_path / "h"),
        **{**SMALL, "steps": 20, "reached": 0.5},
    )
    loaded = Dataset(data).load(("success",))
    success, episodes = loaded.arrays["success"], loaded.episodes
    if not any(success[a : a + n].any() for a, n in episodes):
        with pytest.raises(LabError, match="reached its goal"):
            HighTrainer(cfg)
        return
    trainer = HighTrainer(cfg)
    starts, goals = trainer.reached_starts, trainer.reached_goal
    assert len(starts) and bool(success[goals.numpy()].all())
    assert bool((goals - starts >= cfg.k).all())
    firsts = torch.as_tensor(episodes[:, 0].copy())
    assert torch.equal(
        torch.bucketize(starts, firsts, right=True), torch.bucketize(goals, firsts, right=True)
    )  # the same episode
    assert trainer.run()["step"] == 20


def test_evaluation_runs_the_hierarchy(trained):
    h = HierarchyConfig(chunks=4, samples=64, iterations=2)
    cfg = AgentConfig(decode=False, search=PlannerConfig(samples=64, iterations=2), hierarchy=h)
    result = evaluate("wall", WALL, CostSet(), cfg, 1, seed=0, device="cpu", high=trained[0])
    assert result.complete and result.settings["hierarchy"]["chunks"] == 4
    assert result.episodes[0]["steps"] > 0
    with pytest.raises(LabError, match="needs --high"):
        evaluate("wall", WALL, CostSet(), cfg, 1, device="cpu")


def test_the_command_lines_train_and_evaluate_a_hierarchy(data, trained, tmp_path, capsys):
    from experiments.evaluate import main as evaluate_main
    from worldmodels.highlevel import main as highlevel_main

    out = tmp_path / "cli-high"
    args = [
        "--checkpoint",
        str(WALL),
        "--data",
        str(data),
        "--out",
        str(out),
        "--steps",
        "20",
        "--batch",
        "64",
        "--save-every",
        "10",
        "--subgoal",
        "--no-progress",
    ]
    assert highlevel_main(args) == 0 and (out / "high.json").exists()
    assert json.loads(capsys.readouterr().out.splitlines()[0])["step"] == 20
    assert highlevel_main(["--checkpoint", str(WALL), "--data", str(tmp_path / "none")]) == 2
    code = evaluate_main(
        [
            "--scene",
            "wall",
            "--checkpoint",
            str(WALL),
            "--high",
            str(out),
            "--episodes",
            "1",
            "--samples",
            "50",
            "--no-progress",
        ]
    )
    assert code == 0 and "success" in capsys.readouterr().out
