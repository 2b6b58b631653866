"""Data where the agent goes: rounds of planning in reality, added to the model's data.

    ./lab refine --scene ballcircle --data data/ballcircle --costs costs/circle.json \\
        --rounds 2 --episodes 20 --out runs/ballcircle-refined

Exploration by random actions covers the states random actions reach: on BallCircle
a ball pushed about at random spends half its time beyond the rule's boundary and
bounces off the arena's walls at up to 11 m/s, while the planner drives it around
the circle at 2-5 m/s inside the boundary, where the data are thin and the reward
probe is least sure. The model-based RL recipe (PETS, PlaNet, TD-MPC) closes the loop:
plan with the model, act in reality, add what happened to the data, train again.

Each round runs ``--episodes`` episodes with the agent (the cost set given: the task
term and its guardrails, so the data come from where the rule keeps the agent),
seeded from a seed set no evaluation uses (``REFINE_SEED``), writes them as new
shards of the dataset (same format, listed in its manifest: ``scenes/dataset.py``),
and trains the model again on all of it from the start. Every step taken in reality
counts: ``RefineResult.env_steps`` is the dataset's steps, exploration included.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import scenes
from agents.agent import AgentConfig
from agents.build import build_agent
from agents.cost import CostSet
from agents.planners import PlannerConfig
from common.config import parse_config
from common.device import choose_device
from common.errors import LabError
from common.files import write_json_atomic
from scenes import dataset as ds
from scenes.collect import episode_seed
from worldmodels.checkpoint import load_checkpoint
from worldmodels.train import TrainConfig, Trainer

log = logging.getLogger(__name__)

REFINE_SEED = 7919  # episode seeds of refinement rounds come from (REFINE_SEED + round, i)


@dataclass
class RefineConfig:
    """./lab refine: rounds of agent episodes added to the data, the model trained again."""

    scene: str = field(default="", metadata={"help": "scene name", "required": True})
    data: str = field(default="", metadata={"help": "dataset folder (grows)", "required": True})
    checkpoint: str = field(
        default="", metadata={"help": "the model to start from (trained on --data)"}
    )
    costs: str = field(default="", metadata={"help": "cost set JSON the agent plans with"})
    out: str = field(default="", metadata={"help": "run folder of the last round's model"})
    rounds: int = field(default=2, metadata={"help": "rounds of acting and training"})
    episodes: int = field(default=20, metadata={"help": "agent episodes per round"})
    train_steps: int = field(default=3000, metadata={"help": "training steps per round"})
    samples: int = field(default=150, metadata={"help": "the acting planner's N"})
    iterations: int = field(default=2, metadata={"help": "the acting planner's rounds"})
    seed: int = field(default=0, metadata={"help": "training seed"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})


@dataclass
class RefineResult:
    checkpoint: Path  # the last round's model
    env_steps: int  # every step of the dataset: exploration and the rounds
    rounds: list[dict]  # per round: episodes, steps, the agent's mean return and cost


def act_episodes(agent, seeds: list[int], steps: int) -> tuple[dict[str, np.ndarray], dict]:
    """Run the agent over ``seeds``; its episodes as shard arrays (``scenes.dataset``)."""
    scene = agent.scene
    rows: dict[str, list] = {k: [] for k in ("state", "actions", "signals", "success")}
    episodes, goals, returns, costs = [], [], [], []
    for s in seeds:
        agent.reset(seed=s, options={"goal_obs": True})
        first, total, cost = len(rows["state"]), 0.0, 0.0
        for t in range(steps + 1):
            rows["state"].append(scene.observation["state"])
            rows["signals"].append(list(scene.signals.values()))  # in SIGNALS order
            rows["success"].append(scene.goal_distance() < scene.SUCCESS_RADIUS)
            if t == steps or agent.done:
                rows["actions"].append(np.zeros(scene.ACTION_DIM, np.float32))
                break
            rec = agent.step()
            rows["actions"].append(rec.action)
            total += rec.next_signals.get("reward", 0.0)
            cost += rec.next_signals.get("cost", 0.0)
        episodes.append([first, len(rows["state"]) - first])
        goals.append(np.asarray(scene.goal, np.float32))
        returns.append(total)
        costs.append(cost)
    arrays = {
        "state": np.asarray(rows["state"], np.float32),
        "actions": np.asarray(rows["actions"], np.float32),
        "signals": np.asarray(rows["signals"], np.float32),
        "success": np.asarray(rows["success"], bool),
        "episodes": np.asarray(episodes, np.int64),
        "goals": np.asarray(goals, np.float32).reshape(len(seeds), len(scene.TASK_SIGNALS)),
    }
    return arrays, {"return": float(np.mean(returns)), "cost": float(np.mean(costs))}


def add_episodes(root: Path, arrays: dict[str, np.ndarray]) -> None:
    """Append ``arrays`` to the dataset at ``root`` as its next shard."""
    manifest = ds.load_manifest(root)
    if manifest.get("pixels"):
        raise LabError("refinement adds state episodes only: collect this dataset without pixels")
    index = 1 + max((int(n.split("-")[1]) for n in manifest["shards"]), default=-1)
    meta = ds.write_shard(root, index, arrays, first_episode=int(manifest["episodes"]))
    manifest["shards"][meta["name"]] = meta
    manifest["episodes"] = int(manifest["episodes"]) + meta["n_episodes"]
    write_json_atomic(root / "manifest.json", manifest)


def train(data: Path, out: Path, steps: int, seed: int, device) -> Path:
    trainer = Trainer(
        TrainConfig(
            data=str(data), out=str(out), steps=steps, seed=seed, eval_every=10**9, progress=False
        ),
        device=device,
    )
    trainer.run()
    return out / "checkpoint"


def dataset_steps(root: Path) -> int:
    """Steps taken in reality to make the dataset (rows less one per episode)."""
    manifest = ds.load_manifest(root)
    shards = manifest["shards"].values()
    return sum(m["rows"] for m in shards) - sum(m["n_episodes"] for m in shards)


def refine(
    scene: str,
    data: str | Path,
    checkpoint: str | Path,
    costs: CostSet,
    out: str | Path,
    rounds: int = 2,
    episodes: int = 20,
    train_steps: int = 3000,
    search: PlannerConfig | None = None,
    seed: int = 0,
    device=None,
) -> RefineResult:
    """See the module docstring."""
    key = scenes.scene_key(scene)
    if rounds < 0 or episodes < 1:
        raise LabError("rounds must be 0 or more and episodes at least 1")
    device = choose_device("auto" if device is None else str(device))
    root, out = Path(data), Path(out)
    steps = scenes.max_steps(key)
    search = search or PlannerConfig(samples=150, iterations=2, elites=15)
    cfg = AgentConfig(search=search)
    checkpoint = Path(checkpoint)
    done = []
    for r in range(rounds):
        t0 = time.perf_counter()
        model, _config = load_checkpoint(checkpoint, device=device)
        scene_env = scenes.scene_class(key)(pixels=False)
        try:
            agent = build_agent(model, scene_env, costs, cfg, checkpoint=checkpoint, seed=r)
            seeds = [episode_seed(REFINE_SEED + r, i) for i in range(episodes)]
            arrays, figures = act_episodes(agent, seeds, steps)
        finally:
            scene_env.close()
        add_episodes(root, arrays)
        checkpoint = train(root, out / f"round-{r + 1}", train_steps, seed, device)
        row = {
            "round": r + 1,
            "episodes": episodes,
            "steps": int(arrays["episodes"][:, 1].sum() - episodes),
            **{k: round(v, 2) for k, v in figures.items()},
            "seconds": round(time.perf_counter() - t0, 1),
        }
        log.info("refine round %s", row)
        done.append(row)
    return RefineResult(checkpoint, dataset_steps(root), done)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse_config(RefineConfig, argv, "lab refine", __doc__.split("\n\n")[0])
    try:
        costs = CostSet.load(cfg.costs) if cfg.costs else CostSet()
        result = refine(
            cfg.scene,
            cfg.data,
            cfg.checkpoint,
            costs,
            cfg.out or f"runs/{scenes.scene_key(cfg.scene)}-refined",
            cfg.rounds,
            cfg.episodes,
            cfg.train_steps,
            PlannerConfig(samples=cfg.samples, iterations=cfg.iterations, elites=15),
            cfg.seed,
            cfg.device,
        )
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for row in result.rounds:
        print(row)
    print(f"{result.checkpoint}: {result.env_steps} steps in reality in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
