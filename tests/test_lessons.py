"""The lessons' parts with real objects: the generative world model, the sharpness
figure, Reach's shoves, and lessons run to their figures (short versions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import scenes
from agents.agent import Agent, AgentConfig
from agents.cost import CostSet
from agents.planners import PlannerConfig
from common.errors import LabError
from experiments.lessons import LESSONS, Live
from experiments.lessons.collapse import collapse
from experiments.lessons.open_loop import open_loop
from scenes.collect import CollectConfig, collect
from scenes.reach import PUSH_DISTANCE
from worldmodels import ModelConfig, WorldModel, load_checkpoint
from worldmodels.generative import sharpness
from worldmodels.train import TrainConfig, Trainer

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def reach_pixels(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("data") / "reach"
    collect(CollectConfig(scene="reach", out=str(out), episodes=20, steps=30, workers=2,
                          episodes_per_shard=5, progress=False))  # fmt: skip
    return str(out)


def test_the_generative_model_learns_pixels_and_plans_like_a_jepa(reach_pixels, tmp_path):
    cfg = TrainConfig(data=reach_pixels, out=str(tmp_path / "gen"), obs="pixels",
                      objective="generative", steps=60, batch=16, horizon=4, latent_dim=16,
                      eval_every=1000, progress=False, seed=0)  # fmt: skip
    trainer = Trainer(cfg, CPU)
    first = trainer.train_step()
    assert set(first) == {"pixels", "probe", "probe_imagined", "total"}  # no EMA, no VICReg
    trainer.run()
    last = [trainer.train_step()["pixels"] for _ in range(5)]
    assert np.mean(last) < 0.7 * first["pixels"]
    model, config = load_checkpoint(trainer.snapshot().checkpoint)
    assert config["model"]["objective"] == "generative"
    # the same verbs as the JEPA: an agent plans with it unchanged
    env = scenes.make("reach").unwrapped
    try:
        search = PlannerConfig(samples=32, iterations=1, horizon=4)
        agent = Agent(model, env, CostSet(), AgentConfig(search=search))
        agent.reset(seed=0)
        step = agent.step()
        assert step.imagined_frames.shape == (4, 64, 64, 3)
    finally:
        env.close()


def test_a_generative_model_needs_pixels_and_a_decoder():
    with pytest.raises(LabError, match="predicts pixels"):
        WorldModel(ModelConfig(obs="state", objective="generative"))
    with pytest.raises(LabError, match="objective"):
        WorldModel(ModelConfig(objective="dream"))


def test_sharpness_falls_with_blur_and_is_relative_to_the_real_frame():
    rng = np.random.default_rng(0)
    img = torch.as_tensor(rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8))
    x = img.float().permute(0, 3, 1, 2)
    blurred = torch.nn.functional.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
    blurred = blurred.permute(0, 2, 3, 1).round().to(torch.uint8)
    assert torch.all(sharpness(blurred) < 0.3 * sharpness(img))
    assert torch.allclose(sharpness(img), sharpness(img.float() / 255))
    assert sharpness(torch.zeros(1, 64, 64, 3, dtype=torch.uint8)).item() == 0.0


def test_reach_shoves_the_disc_when_asked_and_only_then():
    env = scenes.make("reach").unwrapped
    try:
        still = np.zeros(2, np.float32)
        paths = []
        for pushes in (0.0, 1.0, 1.0):
            env.reset(seed=3, options={"pushes": pushes, "start": (0.0, 0.0), "goal_obs": False})
            xy = [np.array([env.signals["x"], env.signals["y"]])]
            for _ in range(3):
                env.step(still)
                xy.append(np.array([env.signals["x"], env.signals["y"]]))
            paths.append(np.array(xy))
        moves = [np.linalg.norm(np.diff(p, axis=0), axis=1) for p in paths]
        assert np.all(moves[0] < 1e-3)  # at rest, nothing moves it
        assert np.allclose(moves[1], PUSH_DISTANCE, atol=0.02)  # a shove a step
        assert np.allclose(paths[1], paths[2])  # the episode's seed draws them
        with pytest.raises(LabError, match="pushes is a probability"):
            env.reset(seed=0, options={"pushes": 2})
    finally:
        env.close()


def test_the_collapse_lesson_shows_the_rank_fall_without_ema_and_vicreg():
    live = Live()
    figures = collapse(live, CPU, quick=True)
    assert figures["rank_without"] <= 2 < figures["rank_with"]
    designs = {r["design"] for r in live.rows}
    assert len(designs) == 2 and len(live.pictures) == 2  # a curve and a spread each
    assert live.done == live.total


def test_the_open_loop_lesson_replans_its_way_to_more_goals():
    live = Live()
    figures = open_loop(live, CPU, quick=True)
    for tag in ("calm", "pushed"):
        assert figures[f"receding_success_{tag}"] >= figures[f"open_loop_success_{tag}"]
    assert figures["receding_success_pushed"] > figures["open_loop_success_pushed"]
    assert figures["blind_gap_end_pushed"] > figures["blind_gap_end_calm"]
    pushed = [r for r in live.rows if r["pushes"] > 0]
    # the model's error grows along its own rollout, not one step at a time from reality
    assert pushed[-1]["rollout_error_m"] > pushed[-1]["one_step_error_m"]
    assert live.done == live.total


def test_a_stopped_lesson_says_so():
    import threading

    stop = threading.Event()
    stop.set()
    with pytest.raises(LabError, match="stopped"):
        LESSONS["open_loop"].run(Live(), CPU, stop)


def test_each_lesson_keeps_its_text_beside_its_code():
    for key, lesson in LESSONS.items():
        assert lesson.run.__module__ == f"experiments.lessons.{key}"
        assert lesson.claim and lesson.shows and lesson.next
