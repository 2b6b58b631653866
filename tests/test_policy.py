"""System 1: the policy distilled from the planner (agents/policy.py), with real objects."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

import scenes
from agents.agent import Agent, AgentConfig
from agents.cost import CostSet
from agents.planners import PlannerConfig, shift
from agents.policy import load_policy
from app.home import PRETRAINED
from common.errors import LabError
from experiments.distill import DistillConfig, Distiller
from worldmodels.checkpoint import load_checkpoint, read_config

pytestmark = pytest.mark.slow  # distils policies

CPU = torch.device("cpu")
REACH = str(PRETRAINED / "reach-state")


def tiny(out, rounds: int) -> DistillConfig:
    return DistillConfig(
        scene="reach",
        checkpoint=REACH,
        out=str(out),
        rounds=rounds,
        states=24,
        rollout=8,
        samples=100,
        iterations=2,
        steps=80,
        batch=64,
        hidden=64,
        progress=False,
    )


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    out = tmp_path_factory.mktemp("policy") / "reach"
    d = Distiller(tiny(out, 2), CPU)
    d.run()
    return out, d


def test_distillation_lowers_the_imitation_loss(distilled):
    _, d = distilled
    first, last = d.history[0], d.history[-1]
    assert first["held_out_mse_after"] < first["held_out_mse_before"]
    assert last["held_out_mse_after"] < first["held_out_mse_before"]
    assert [h["labels"] for h in d.history] == [24, 48]  # DAgger aggregates


def test_a_saved_policy_round_trips_and_a_foreign_one_is_refused(distilled, tmp_path):
    out, d = distilled
    policy = load_policy(out, REACH, CPU)
    s, g = torch.randn(5, d.policy.shape.latent_dim), torch.rand(5, 2) - 0.5
    with torch.no_grad():
        assert torch.equal(policy(s, g), d.policy(s, g))
    assert json.loads((out / "policy.json").read_text())["model_id"]
    with pytest.raises(LabError, match="was distilled on the world model"):
        load_policy(out, PRETRAINED / "wall-state", CPU)
    (tmp_path / "policy.json").write_text('{"format": "lab-costs", "version": 1}')
    with pytest.raises(LabError, match="is not a lab policy"):
        load_policy(tmp_path, REACH, CPU)


def test_distillation_resumes_exactly(distilled, tmp_path):
    _, straight = distilled
    first = Distiller(tiny(tmp_path / "p", 1), CPU)
    first.run()
    again = Distiller(tiny(tmp_path / "p", 2), CPU)  # the same folder: goes on from round 1
    assert again.round == 1
    with pytest.raises(LabError, match="other settings"):
        Distiller(replace(tiny(tmp_path / "p", 2), samples=50), CPU)
    again.run()
    for k, v in straight.policy.state_dict().items():
        assert torch.equal(v, again.policy.state_dict()[k]), k


def test_the_agent_acts_with_the_policy_and_with_both(distilled):
    out, _ = distilled
    model, _ = load_checkpoint(REACH, device=CPU)
    policy = load_policy(out, REACH, CPU)
    scene = scenes.make("reach").unwrapped
    try:
        search = PlannerConfig(samples=50, horizon=8, iterations=2)
        for actor in ("policy", "both"):
            cfg = AgentConfig(search=search, actor=actor, decode=False)
            agent = Agent(model, scene, CostSet(), cfg, policy=policy)
            agent.reset(seed=0)
            rec = agent.step()
            assert rec.plan.actions.shape == (8, 2) and rec.action.shape == (2,)
            if actor == "policy":  # one sample: the policy's own imagined sequence
                assert rec.plan.samples.shape == (1, 8, 2) and rec.plan.iterations == 0
            else:  # the planner searched around it
                last = agent.planner.sizes()[-1]  # the last round's (iCEM's decay)
                assert rec.plan.samples.shape == (last, 8, 2)
                assert rec.plan.info["proposal_seconds"] > 0
        # with one iteration the search's first sample is the policy's proposal itself
        cfg = AgentConfig(search=replace(search, iterations=1), actor="both", decode=False)
        agent = Agent(model, scene, CostSet(), cfg, policy=policy)
        agent.reset(seed=1)
        plan = agent.think().plan
        assert torch.equal(plan.samples[0], plan.info["proposal"])
        s0 = model.encode(scene.observation)
        expected = policy.imagine(model, s0, agent.goal[None], 8)[0]
        assert torch.allclose(plan.info["proposal"], expected)
        # then the policy reads the last plan's imagined states in one pass, and its
        # proposal is one more sample beside the last plan shifted (the search's mean)
        last = agent.step()
        plan = agent.think().plan
        states = torch.cat([model.encode(scene.observation), last.plan.latents[1:]])
        assert torch.allclose(plan.info["proposal"], policy(states, agent.goal.expand(8, -1)))
        assert torch.equal(plan.samples[1], plan.info["proposal"])
        assert torch.equal(plan.samples[0], shift(last.plan.actions))
        with pytest.raises(LabError, match="needs a policy"):
            Agent(model, scene, CostSet(), AgentConfig(actor="policy"))
    finally:
        scene.close()


def test_system12_benchmark_runs_quick():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if not (root / "pretrained" / "policy-reach" / "policy.json").exists():
        pytest.skip("pretrained/policy-reach is made by ./lab pretrain")
    out = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "system12.py"), "--quick", "--scenes", "reach"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (row,) = json.loads(out.stdout.strip().splitlines()[-1])
    keys = {
        "policy_ms",
        "planner_ms",
        "policy_success",
        "planner_success",
        "both_success",
        "both_ms",
        "new_rule_violation_policy",
        "new_rule_violation_planner",
    }
    assert keys <= set(row) and row["scene"] == "reach" and row["episodes"] == 3


def test_a_damaged_policy_file_is_refused_with_a_message(distilled, tmp_path):
    out, _ = distilled
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "policy.json").write_text((out / "policy.json").read_text())
    (broken / "policy.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(LabError, match="holds a broken policy"):
        load_policy(broken, REACH, CPU)


def test_a_recalibrated_model_keeps_its_policies(distilled, tmp_path):
    """A calibration saves the weights again under a new name: the latents are the same."""
    import shutil

    from worldmodels.checkpoint import resave_checkpoint

    out, _ = distilled
    copy = tmp_path / "reach-state"
    shutil.copytree(REACH, copy)
    model, config = load_checkpoint(copy, device=CPU)
    resave_checkpoint(model, copy, config, note="recalibrated")
    assert read_config(copy)["weights"] != config["weights"]
    load_policy(out, copy, CPU)  # not refused


def test_distillation_draws_its_starts_from_exploration_data(tmp_path):
    from scenes.collect import CollectConfig, collect

    data = tmp_path / "data"
    collect(
        CollectConfig(scene="reach", out=str(data), episodes=6, steps=20, workers=1, progress=False)
    )
    cfg = replace(tiny(tmp_path / "p", 1), data=str(data))
    d = Distiller(cfg, CPU)
    assert d.dataset is not None and len(d.dataset.goals) == 6
    d.run()
    assert d.history[-1]["labels"] == 24
    with pytest.raises(LabError, match="other settings"):  # the data are part of the run
        Distiller(replace(cfg, data=""), CPU)
    with pytest.raises(LabError, match="holds reach data, not wall"):
        Distiller(
            replace(
                cfg,
                scene="wall",
                checkpoint=str(PRETRAINED / "wall-state"),
                out=str(tmp_path / "w"),
            ),
            CPU,
        )


@pytest.mark.skipif(
    not (PRETRAINED / "policy-reach" / "policy.json").exists(), reason="./lab pretrain"
)
def test_the_warm_start_is_timed_with_every_design_on_each_episode():
    from experiments.system12 import Setup, warm_start_times

    setup = Setup("reach", REACH, str(PRETRAINED / "policy-reach"), episodes=2, device=CPU)
    said = []
    out = warm_start_times(setup, progress=said.append)
    for design in ("planner3", "planner2", "both2"):
        assert out[f"{design}_ms"] > 0 and 0 <= out[f"{design}_success"] <= 1
    assert out["both2_ratio"] == round(out["both2_ms"] / out["planner3_ms"], 3)
    assert said[-1] == "episode 2 of 2, each design in turn"
