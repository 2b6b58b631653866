"""On-policy refinement (experiments.refine) with real objects: a Bullet-Safety-Gym task,
a real collection, a real (short) training, the agent acting in reality; the dataset
grows by the agent's episodes and the model is trained again on all of it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agents.cost import CostSet, Term
from agents.planners import PlannerConfig
from experiments.refine import dataset_steps, refine
from scenes import dataset as ds
from scenes.collect import CollectConfig, collect
from worldmodels.checkpoint import load_checkpoint
from worldmodels.train import TrainConfig, Trainer


@pytest.mark.slow
def test_a_round_adds_the_agents_episodes_and_trains_again(tmp_path):
    data = collect(
        CollectConfig(
            scene="ballrun", out=str(tmp_path / "data"), episodes=4, pixels=False, progress=False
        )
    )
    trainer = Trainer(
        TrainConfig(data=str(data), out=str(tmp_path / "run"), steps=20, progress=False),
        device="cpu",
    )
    trainer.run()
    before = ds.load_manifest(data)
    assert dataset_steps(data) == 4 * 100
    rule = Term("stay on the track", "abs(y)", "hard", limit=1.8)
    result = refine(
        "ballrun",
        data,
        tmp_path / "run" / "checkpoint",
        CostSet(task="reward", terms=[rule]),
        tmp_path / "refined",
        rounds=1,
        episodes=2,
        train_steps=10,
        search=PlannerConfig(samples=16, horizon=4, iterations=1, elites=4, repair=0),
        device="cpu",
    )
    after = ds.load_manifest(data)
    assert after["episodes"] == before["episodes"] + 2
    assert len(after["shards"]) == len(before["shards"]) + 1
    assert result.env_steps == dataset_steps(data) == 6 * 100
    (row,) = result.rounds
    assert row["episodes"] == 2 and row["steps"] == 200 and np.isfinite(row["return"])
    loaded = ds.Dataset(data).load(("state", "actions", "signals"))
    assert loaded.episodes.shape == (6, 2) and (loaded.episodes[:, 1] == 101).all()
    model, config = load_checkpoint(result.checkpoint)
    assert config["scene"] == "ballrun" and "reward" in model.signal_names
    assert json.loads((data / "manifest.json").read_text())["complete"]
