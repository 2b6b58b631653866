"""Memory: the occluded kitchen's screen, its impossible events, a pixel model grown a
memory with a real small training run, its surprise, and an agent carrying its belief
(real PyBullet clients; nothing mocked)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pybullet as p
import pytest
import torch

from agents.agent import Agent, AgentConfig
from agents.cost import CostSet
from agents.planners import PlannerConfig
from common.errors import LabError
from scenes.collect import CollectConfig, collect
from scenes.occluded import JUMP, OccludedEnv
from worldmodels import load_checkpoint
from worldmodels.calibrate import CalibrateConfig, calibrate
from worldmodels.memory import MemoryConfig, MemoryTrainer, along
from worldmodels.train import TrainConfig, Trainer

WALK = {"x": 0.95, "y": 0.5, "dir": -1.0, "speed": 0.3}  # behind the screen in 20 steps


def person_pixels(env: OccludedEnv) -> int:
    """The person's pixels in the camera's 64 x 64 image (a segmentation render)."""
    cam = env.camera
    _, _, _, _, seg = env.client.getCameraImage(
        64, 64, cam.view, cam.projection, shadow=0, renderer=p.ER_TINY_RENDERER
    )
    return int((np.asarray(seg).reshape(64, 64) == env.person).sum())


@pytest.fixture
def env():
    e = OccludedEnv()
    yield e
    e.close()


def test_the_screen_hides_the_person_exactly_when_person_seen_says_so(env):
    env.reset(seed=0, options={"person": WALK})
    seen, ys = [], []
    for _ in range(35):  # y 0.5 -> -0.55: wholly behind the screen from -0.13 to -0.3
        _, _, _, _, info = env.step(np.zeros(3, np.float32))
        s = info["signals"]
        seen.append(s["person_seen"])
        ys.append(s["person_y"])
        pixels = person_pixels(env)
        if s["person_seen"] == 0:
            assert pixels == 0, s
        if s["person_seen"] == 1:
            assert pixels > 20, s
    assert sum(v == 0 for v in seen) >= 5  # behind the screen for half a second
    assert seen[0] > 0.9 and seen[-1] > 0.5  # in view, then out at the other side
    assert np.all(np.diff(ys) < 0)  # walking on in the state while hidden


def test_the_far_screen_hides_them_where_they_turn_round(env):
    """The second place to hide: the path's far end, where they turn round unseen."""
    env.reset(seed=0, options={"person": {**WALK, "dir": 1.0}})
    hidden = []
    for _ in range(30):  # y 0.5 -> 0.9, round and back to 0.6
        _, _, _, _, info = env.step(np.zeros(3, np.float32))
        s = info["signals"]
        if s["person_seen"] == 0:
            assert person_pixels(env) == 0, s
            hidden.append(s["person_y"])
    assert len(hidden) >= 5 and min(hidden) > 0.6  # behind the far screen, not the near
    assert len(env.walls) == 2


def test_impossible_events_happen_between_two_frames_and_bad_ones_are_refused(env):
    env.reset(seed=0, options={"person": WALK, "event": {"kind": "vanish", "at": 3}})
    for _ in range(2):
        env.step(np.zeros(3, np.float32))
    assert person_pixels(env) > 20
    _, _, _, _, info = env.step(np.zeros(3, np.float32))
    assert person_pixels(env) == 0 and info["signals"]["person_seen"] == 0
    assert info["signals"]["person_y"] > 0.3  # in the open, where nothing hides them
    snap = env.snapshot()
    env.reset(seed=0, options={"person": WALK})
    assert person_pixels(env) > 20
    env.restore(snap)
    env.step(np.zeros(3, np.float32))
    assert person_pixels(env) == 0  # the vanishing is part of the saved state

    walk = {**WALK, "y": 0.3}
    env.reset(seed=0, options={"person": walk, "event": {"kind": "jump", "at": 3}})
    for _ in range(2):
        env.step(np.zeros(3, np.float32))
    before = env.signals["person_y"]
    env.step(np.zeros(3, np.float32))
    step = walk["dir"] * walk["speed"] * env.CONTROL_DT
    assert env.signals["person_y"] == pytest.approx(before + step + JUMP, abs=1e-6)
    assert person_pixels(env) > 20
    for bad in (
        {"kind": "teleport", "at": 3},
        {"kind": "vanish"},
        {"kind": "vanish", "at": 0},
        {"kind": "vanish", "at": True},
        "vanish",
    ):
        with pytest.raises(LabError, match="the 'event' option must be"):
            env.reset(seed=0, options={"event": bad})


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    """A tiny pixel model on a few occluded-kitchen episodes, reading the robot's own
    sensors beside the frames as the shipped one does, and a memory grown from it."""
    root = tmp_path_factory.mktemp("memory")
    data = root / "data"
    collect(
        CollectConfig(
            scene="occluded",
            out=str(data),
            episodes=10,
            steps=50,
            workers=2,
            episodes_per_shard=5,
            progress=False,
        )
    )
    base = Trainer(
        TrainConfig(
            data=str(data),
            out=str(root / "base"),
            obs="pixels",
            steps=40,
            batch=8,
            latent_dim=32,
            probe_hidden=16,
            predictor_hidden=32,
            proprio=True,
            eval_every=1000,
            progress=False,
        )
    )
    base.run()
    cfg = MemoryConfig(
        base=str(base.snapshot().checkpoint),
        data=str(data),
        out=str(root / "memory"),
        steps=60,
        batch=8,
        window=24,
        burn_in=8,
        horizon=4,
        starts=4,  # rollouts from 4 of each window's 12 beliefs, drawn
        progress=False,
    )
    return cfg, MemoryTrainer(cfg)


@pytest.mark.slow
def test_a_memory_grows_from_the_pixel_model_and_learns(grown):
    cfg, trainer = grown
    base, _ = load_checkpoint(cfg.base)
    model = trainer.model
    frames = trainer.data.inputs(torch.arange(3))
    with torch.no_grad():  # it starts as the model it grew from: the frame is trusted
        assert torch.allclose(model.encode(frames), base.encode(frames), atol=1e-6)
    figures = trainer.run()
    before, after = figures["held_out_before"], figures["held_out_after"]
    assert all(np.isfinite(v) for v in after.values())
    assert after["probe"] < before["probe"]
    loaded, config = load_checkpoint(cfg.out)
    assert loaded.cfg.memory and loaded.distance is None
    assert config["grown_from"] == cfg.base and config["scene"] == "occluded"
    # the encoder stayed the base's: the frame's latent before any memory is the same
    with torch.no_grad():
        assert torch.allclose(loaded.encode(frames), base.encode(frames), atol=1e-2)
    # a belief carries the past: the same frame after other frames reads differently
    start, n = (int(v) for v in trainer.data.episodes[0])
    rows = torch.arange(start, start + n)
    pixels, actions = trainer.data.pixels[rows], trainer.data.actions[rows[:-1]]
    states = trainer.data.state[rows]
    with torch.no_grad():
        beliefs, surprise = along(loaded, pixels, actions, states)
        fresh, _ = along(loaded, pixels[10:], actions[10:], states[10:])
        plain, plain_surprise = along(base, pixels, actions, states)
    assert not torch.allclose(beliefs[10], fresh[0], atol=1e-4)
    assert surprise[0] == 0 and bool((surprise[1:] > 0).all())
    with torch.no_grad():  # without memory, surprise is the plain prediction error
        expected = base.predictor(plain[4], actions[4])
        assert float(plain_surprise[5]) == pytest.approx(
            float((plain[5] - expected).pow(2).mean().sqrt()), rel=1e-5
        )


@pytest.mark.slow
def test_an_agent_carries_its_belief_from_step_to_step(grown):
    cfg, trainer = grown
    if not Path(cfg.out, "config.json").exists():
        trainer.run()
    model, _ = load_checkpoint(cfg.out)
    env = OccludedEnv()
    try:
        small = PlannerConfig(samples=20, iterations=2, horizon=4, elites=4)
        agent = Agent(model, env, CostSet(), AgentConfig(search=small, decode=False), seed=0)
        agent.reset(seed=1, options={"person": WALK})
        first = agent.step()
        assert first.surprise is None and agent.latent is not None
        thought = agent.think()
        with torch.no_grad():  # the belief: the frame corrected by the prior from the last
            s, prior = model.observe(
                {**agent._with_memory(env.observation), "belief": first_latent(agent)}
            )
        assert torch.allclose(thought.latent, s[0], atol=1e-5)
        assert thought.surprise == pytest.approx(
            float((s[0] - prior[0]).pow(2).mean().sqrt()), rel=1e-4
        )
        agent.step(thought)
        assert torch.equal(agent.latent, thought.latent)
        agent.reset(seed=1, options={"person": WALK})
        assert agent.latent is None  # a new episode remembers nothing
    finally:
        env.close()
    # held-out windows would start from a frame, not a belief: refused, with the way
    with pytest.raises(LabError, match=r"has a memory.*--episodes"):
        calibrate(CalibrateConfig(checkpoint=cfg.out, data=cfg.data))


@pytest.mark.slow
def test_the_pixel_model_reads_the_robots_own_sensors_not_the_persons(grown):
    cfg, trainer = grown
    base, _ = load_checkpoint(cfg.base)
    names = [s.name for s in OccludedEnv.STATE]
    assert [names[i] for i in base.cfg.proprio] == list(OccludedEnv.PROPRIO)
    assert not any(names[i].startswith("person") for i in base.cfg.proprio)
    obs = trainer.data.inputs(torch.arange(4))
    moved = {k: v.clone() for k, v in obs.items()}
    with torch.no_grad():
        seen = base.encode(obs)
        moved["state"][:, names.index("person_y")] += 0.5  # the person is known from pixels
        assert torch.equal(base.encode(moved), seen)
        moved["state"][:, names.index("hand_vx")] += 0.3  # the hand as the robot senses it
        assert not torch.allclose(base.encode(moved), seen)
        with pytest.raises(LabError, match="robot's own sensors"):
            base.encode({k: v for k, v in obs.items() if k != "state"})


def first_latent(agent: Agent) -> torch.Tensor:
    return agent.latent[None]


@pytest.mark.slow
def test_old_checkpoints_load_without_memory_and_a_state_model_cannot_grow_one(grown, tmp_path):
    cfg, trainer = grown
    folder = Path(cfg.base)
    config = json.loads((folder / "config.json").read_text())
    del config["model"]["memory"]  # written before memory existed
    (folder / "config.json").write_text(json.dumps(config))
    model, _ = load_checkpoint(folder)
    assert not model.cfg.memory and model.memory is None
    state = Trainer(
        TrainConfig(
            data=cfg.data,
            out=str(tmp_path / "state"),
            steps=2,
            batch=8,
            hidden=32,
            latent_dim=8,
            eval_every=1000,
            decoder=False,
            progress=False,
        )
    )
    state.run()
    base = str(state.snapshot().checkpoint)
    bad = MemoryConfig(base=base, data=cfg.data, out=str(tmp_path / "m"))
    with pytest.raises(LabError, match="memory grows from a pixel model"):
        MemoryTrainer(bad)
    # a memory grown before the gate existed: no gate in its settings nor its weights
    ungated = MemoryConfig(
        **{**vars(cfg), "out": str(tmp_path / "ungated"), "steps": 2, "gate": False}
    )
    MemoryTrainer(ungated).run()
    config = json.loads(Path(ungated.out, "config.json").read_text())
    made_by = config["made_by"]  # a command that runs: flags, not "--gate False"
    assert "--steps 2 " in made_by and made_by.endswith("--no-gate")
    del config["model"]["memory_gate"]
    Path(ungated.out, "config.json").write_text(json.dumps(config))
    old, _ = load_checkpoint(ungated.out)
    assert old.cfg.memory and old.memory.gate is None
    assert trainer.model.memory.gate is not None  # grown now: gated (the default)
