"""The steps-to-go head (worldmodels/distance.py): trained for real on a little Reach
exploration data beside the shipped model, saved into a copy of its checkpoint, and
read by the agent's latent task term."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import scenes
from agents.agent import Agent, AgentConfig
from agents.cost import CostSet
from agents.planners import PlannerConfig
from common.errors import LabError
from scenes.collect import CollectConfig, collect
from worldmodels.checkpoint import latent_identity, load_checkpoint, save_checkpoint
from worldmodels.data import WindowData
from worldmodels.distance import DistanceConfig, encode_rows, train_distance, transitions
from worldmodels.model import ModelConfig, WorldModel, iqe

pytestmark = pytest.mark.slow  # collects data and trains steps-to-go heads

ROOT = Path(__file__).resolve().parents[1]
REACH = ROOT / "pretrained" / "reach-state"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distance")
    data = tmp / "data"
    collect(
        CollectConfig(
            scene="reach", out=str(data), episodes=6, workers=1, pixels=False, progress=False
        )
    )
    model = tmp / "reach-state"
    shutil.copytree(REACH, model)
    seen = []
    cfg = DistanceConfig(
        checkpoint=str(model), data=str(data), steps=600, batch=256, progress=False
    )
    folder, record = train_distance(cfg, progress=lambda done, total, figures: seen.append(done))
    return folder, record, data, seen


def test_the_head_counts_steps_and_keeps_the_model(trained):
    folder, record, data, seen = trained
    assert seen and seen[-1] == 600 and record["steps"] == 600
    model, config = load_checkpoint(folder)
    assert model.cfg.distance_dim == 32 and config["distance"]["data"] == str(data)
    # the world model itself is untouched: its policies and bounds still hold
    assert latent_identity(folder) == latent_identity(REACH)
    rows = WindowData(str(data), "state", torch.device("cpu"), horizon=1, val_fraction=0.0)
    z = encode_rows(model, rows)
    steps = transitions(rows.episodes)
    with torch.no_grad():
        phi = model.distance(z)
    one = torch.linalg.vector_norm(phi[steps] - phi[steps + 1], dim=-1)
    assert float(one.mean()) < 1.2  # one step apart is about one apart
    # farther apart in the arena is more steps apart (no label was used to learn it)
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randint(len(z), (2000,), generator=g) for _ in range(2))
    learned = torch.linalg.vector_norm(phi[a] - phi[b], dim=-1).numpy()
    metres = torch.linalg.vector_norm(rows.state[a, :2] - rows.state[b, :2], dim=-1).numpy()
    rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731
    assert np.corrcoef(rank(learned), rank(metres))[0, 1] > 0.7


def test_the_latent_task_term_reads_the_head(trained):
    folder = trained[0]
    model, _ = load_checkpoint(folder)
    scene = scenes.make("reach").unwrapped
    try:
        cfg = AgentConfig(decode=False, search=PlannerConfig(samples=64, iterations=2))
        agent = Agent(model, scene, CostSet(task="latent"), cfg)
        agent.reset(seed=3)
        plan = agent.think().plan
        with torch.no_grad():
            want = model.goal_distance(plan.latents, agent.goal_latent)  # (H,)
        got = plan.terms["task"][plan.chosen]
        assert torch.allclose(got, want, atol=1e-4)
        # without a head (older checkpoints): the plain latent distance, as before
        plain = WorldModel(ModelConfig.from_dict({**model.cfg.to_dict(), "distance_dim": 0}))
        assert plain.distance is None
        s = torch.randn(5, plain.cfg.latent_dim)
        assert torch.allclose(plain.goal_distance(s, s[0]), (s - s[0]).norm(dim=-1))
    finally:
        scene.close()


def test_the_quasimetric_is_one_and_need_not_be_symmetric():
    """IQE: zero from a state to itself, the triangle inequality, and a union of intervals
    per component (here one component: its length, checked against a fine grid)."""
    g = torch.Generator().manual_seed(0)
    x, y, z = (torch.randn(2000, 16, generator=g) for _ in range(3))
    assert bool((iqe(x, x) == 0).all())
    assert bool((iqe(x, z) <= iqe(x, y) + iqe(y, z) + 1e-5).all())
    assert float((iqe(x, y) - iqe(y, x)).abs().mean()) > 0.1
    a, b = torch.randn(8, generator=g).double(), torch.randn(8, generator=g).double()
    grid = torch.linspace(-6, 6, 1_200_001, dtype=torch.float64)[:, None]
    inside = ((grid >= a) & (grid < torch.maximum(a, b))).any(-1)
    assert abs(float(inside.double().mean()) * 12 - float(iqe(a, b))) < 1e-3


def test_a_quasimetric_head_trains_and_plans(trained, tmp_path):
    """``--kind quasi``: steps from s to g need not be the steps back; saved, loaded and
    read by the latent task term like the metric head."""
    _, _, data, _ = trained
    model_dir = tmp_path / "reach-state"
    shutil.copytree(REACH, model_dir)
    cfg = DistanceConfig(
        checkpoint=str(model_dir),
        data=str(data),
        steps=400,
        batch=256,
        kind="quasi",
        progress=False,
    )
    folder, _ = train_distance(cfg)
    model, config = load_checkpoint(folder)
    assert model.cfg.distance_kind == "quasi" and config["distance"]["kind"] == "quasi"
    rows = WindowData(str(data), "state", torch.device("cpu"), horizon=1, val_fraction=0.0)
    z = encode_rows(model, rows)
    steps = transitions(rows.episodes)
    with torch.no_grad():
        forward = model.goal_distance(z[steps], z[steps + 1])
        g = torch.Generator().manual_seed(1)
        a, b = (torch.randint(len(z), (2000,), generator=g) for _ in range(2))
        there, back = model.goal_distance(z[a], z[b]), model.goal_distance(z[b], z[a])
    assert float(forward.mean()) < 1.2 < float(there.mean())  # a step is about one
    assert not torch.allclose(there, back)
    with pytest.raises(LabError, match="metric or quasi"):
        WorldModel(ModelConfig.from_dict({**model.cfg.to_dict(), "distance_kind": "cosine"}))


def test_data_of_another_scene_is_refused(trained, tmp_path):
    data = tmp_path / "wall"
    collect(
        CollectConfig(
            scene="wall",
            out=str(data),
            episodes=2,
            steps=10,
            workers=1,
            pixels=False,
            progress=False,
        )
    )
    with pytest.raises(LabError, match="wall data"):
        train_distance(
            DistanceConfig(checkpoint=str(trained[0]), data=str(data), steps=2, progress=False)
        )


def test_a_checkpoint_from_before_the_head_loads_and_plans_as_before(tmp_path):
    """A config.json written before ``distance_dim`` existed: no head, plain distance."""
    cfg = ModelConfig(signals=("x", "y"), decoder=False)
    save_checkpoint(WorldModel(cfg), tmp_path, {"scene": "reach", "step": 1})
    config = json.loads((tmp_path / "config.json").read_text())
    del config["model"]["distance_dim"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    model, _ = load_checkpoint(tmp_path)
    assert model.distance is None and model.cfg.distance_dim == 0


def test_label_free_benchmark_runs_quick():
    """The benchmark's quick form: Reach from state, 5 episodes, every cost it compares."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "label_free.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (row,) = json.loads(out.stdout.strip().splitlines()[-1])
    keys = {
        "latent_success",
        "plain_success",
        "signal_success",
        "oracle_success",
        "steps_latent",
        "steps_signal",
    }
    assert keys <= set(row) and (row["scene"], row["obs"], row["episodes"]) == ("reach", "state", 5)
    assert row["latent_success"] >= 0.8  # the shipped head gets there without labels
