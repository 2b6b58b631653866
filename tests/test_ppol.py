"""PPO-Lagrangian, the trained-in baseline: a real short training run on a real
Bullet-Safety-Gym task, saved without pickle, loaded, measured, resumed; its cost from
the task or from a rule the lab writes; bad folders refused with a clear message."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.cost import Term
from agents.statepolicy import load_state_policy
from common.errors import LabError
from experiments.ppol import CostedTask, Multiplier, PPOLConfig, load, measure, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("ppol") / "ballcircle"
    cfg = PPOLConfig(scene="ballcircle", steps=512, envs=2, n_steps=128, out=str(out))
    return train(cfg, progress=False), cfg


def test_a_short_run_saves_a_policy_that_loads_without_pickle_and_acts(trained):
    folder, _ = trained
    assert {p.name for p in folder.iterdir()} == {"policy.safetensors", "ppol.json"}
    record = json.loads((folder / "ppol.json").read_text())
    assert record["env_steps"] == 512 and record["config"]["scene"] == "ballcircle"
    # 2 environments x 128 steps a rollout: 2 rollouts, each noted once an episode ended
    assert all({"env_steps", "return", "cost", "lambda"} <= set(r) for r in record["curve"])
    assert record["lambda"] >= 0.0
    policy = load(folder)
    action = policy(torch.zeros(3, 8))
    assert action.shape == (3, 2) and bool((action.abs() <= 1.0).all())
    rows = measure(policy, 1, seed=0)
    assert len(rows) == 1 and rows[0]["steps"] == 200 and np.isfinite(rows[0]["return"])
    again = measure(policy, 1, seed=0)
    assert again == rows  # the same seeded episode, the same deterministic policy


def test_resume_goes_on_from_the_folder(trained):
    folder, cfg = trained
    before = json.loads((folder / "ppol.json").read_text())
    more = PPOLConfig(**{**cfg.__dict__, "steps": 768, "resume": True})
    train(more, progress=False)
    after = json.loads((folder / "ppol.json").read_text())
    assert after["env_steps"] == 768
    assert after["curve"][: len(before["curve"])] == before["curve"]
    assert after["pid"]["integral"] >= 0 and after["pid"]["lambda"] == after["lambda"]
    for change in ({"rule": "abs(y)", "limit": 1.0}, {"ki": 0.05}, {"cost_limit": 5.0}):
        other = PPOLConfig(**{**cfg.__dict__, **change, "resume": True})
        with pytest.raises(LabError, match="other settings"):
            train(other, progress=False)


def test_the_cost_is_the_tasks_own_or_the_rule_the_lab_writes():
    own = CostedTask("ballcircle", None, Multiplier())
    ruled = CostedTask(
        "ballcircle", Term("rule", "abs(x)", kind="hard", limit=-1.0), Multiplier(2.0)
    )
    try:
        own.reset(seed=0)
        ruled.reset(seed=0)
        a = np.array([0.5, 0.0], np.float32)
        _, r_own, *_, info_own = own.step(a)
        _, r_ruled, *_, info_ruled = ruled.step(a)
        assert info_own["cost"] == 0.0  # the ball starts inside the task's boundary
        assert info_ruled["cost"] == 1.0  # |x| > -1 everywhere: this rule always breaks
        # the reward less lambda x cost, over 1 + lambda: (r - 2) / 3
        assert r_ruled == pytest.approx((r_own - 2.0) / 3.0)
    finally:
        own.close()
        ruled.close()


def test_bad_folders_and_goal_scenes_get_a_clear_message(tmp_path, trained):
    with pytest.raises(LabError, match=r"no ppol\.json"):
        load(tmp_path)
    (tmp_path / "ppol.json").write_text("{not json")
    with pytest.raises(LabError, match="not valid JSON"):
        load(tmp_path)
    (tmp_path / "ppol.json").write_text(json.dumps({"format": "lab-ppol", "version": 1}))
    with pytest.raises(LabError, match="damaged"):
        load(tmp_path)
    (tmp_path / "ppol.json").write_text(json.dumps({"kind": "something else"}))
    with pytest.raises(LabError, match="not a PPO-Lagrangian"):
        load(tmp_path)
    folder, _ = trained
    (tmp_path / "ppol.json").write_text((folder / "ppol.json").read_text())
    (tmp_path / "policy.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(LabError, match="cannot be read"):
        load(tmp_path)
    with pytest.raises(LabError, match="reward"):
        CostedTask("reach", None, Multiplier())


def test_the_lab_rebuilds_the_actor_stable_baselines3_trained(trained):
    """Plain torch from the two files acts as Stable-Baselines3's own policy does (its
    deterministic action on the normalised, clipped state), batched."""
    from safetensors.torch import load_file
    from stable_baselines3.common.policies import ActorCriticPolicy

    folder, _ = trained
    ours = load(folder)
    record = json.loads((folder / "ppol.json").read_text())
    box = gym.spaces.Box
    theirs = ActorCriticPolicy(
        box(-np.inf, np.inf, (8,), np.float32),
        box(-1.0, 1.0, (2,), np.float32),
        lambda _: 0.0,
        net_arch=record["net"],
    )
    theirs.load_state_dict(load_file(str(folder / "policy.safetensors")))
    states = torch.randn(16, 8) * 3.0
    mean = torch.tensor(record["obs_rms"]["mean"], dtype=torch.float32)
    std = torch.sqrt(torch.tensor(record["obs_rms"]["var"], dtype=torch.float32) + 1e-8)
    with torch.no_grad():
        want = theirs._predict(((states - mean) / std).clamp(-10, 10), deterministic=True)
        assert torch.allclose(ours(states), want.clamp(-1, 1), atol=1e-6)


def test_a_policy_refuses_a_scene_it_was_not_trained_on(trained):
    folder, _ = trained
    with pytest.raises(LabError, match="trained on ballcircle, not carcircle"):
        load_state_policy(folder, "carcircle", torch.device("cpu"))


def test_the_multiplier_is_fsrls_pid_and_plain_ascent_without_p_and_d():
    pid = Multiplier()
    pid.step(70.0, 0.05, 0.0005, 0.1)  # far over the limit, rising: P, I and D
    assert pid.value == pytest.approx(0.05 * 70 + 0.0005 * 70 + 0.1 * 70)
    pid.step(-5.0, 0.05, 0.0005, 0.1)  # back within the limit: P pulls it down at once
    assert pid.value == pytest.approx(max(0.0, 0.05 * -5 + 0.0005 * 65))
    ascent = Multiplier()
    values = []
    for excess in (30.0, 20.0, -10.0, -50.0, 5.0):
        ascent.step(excess, 0.0, 0.05, 0.0)
        values.append(ascent.value)
    assert values == pytest.approx([1.5, 2.5, 2.0, 0.0, 0.25])  # lambda += 0.05 e, >= 0


def test_a_ppol_actor_takes_no_margin_and_no_stop(trained):
    """Its imagined plan is its action held, not what it would do: a margin or a stop on
    an unsafe plan would judge a plan it does not follow."""
    from agents.agent import AgentConfig
    from agents.cost import CostSet
    from common.paths import PRETRAINED
    from experiments.evaluate import evaluate

    folder, _ = trained
    for cfg in (AgentConfig(actor="ppol", fallback="stop"), AgentConfig(actor="ppol", margin=1.0)):
        with pytest.raises(LabError, match="acts alone"):
            evaluate(
                "ballcircle",
                PRETRAINED / "ballcircle-state",
                CostSet(task="reward"),
                cfg,
                1,
                device="cpu",
                policy=folder,
            )
