"""Goals as observations: planning on latent distance, without labels.

    ./lab bench label_free [--quick] [--episodes 20] [--scenes reach,wall,push]

For each shipped model (``pretrained/<scene>-<obs>``) on the same seeded
episodes, the agent plans (CEM, the lab's defaults) with:

* ``latent``: the latent task term, the goal given as an observation (the
  goal's state vector, or its image for a pixel model) and the distance read
  by the model's steps-to-go head (``worldmodels/distance.py``): no probe and
  no signal label anywhere in the cost;
* ``plain``: the same, with the plain Euclidean latent distance (the head
  removed): what the lab had;
* ``signal``: the probed task signals against the goal's (labels);
* ``oracle``: the true simulator, planning on the task signals.

Per scene and observation kind: ``latent_success``, ``plain_success``,
``signal_success``, ``oracle_success`` and steps to the goal of the
successful episodes. Goals: Reach from state and from pixels, latent success
>= 0.9 and >= 0.9 x the signal term's. Wall and Push are reported beside, with
no subgoal term (Push's shipped cost set has one, the plain task here has
not). Prints the figures, then one JSON line: a list, one object per model.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from agents.agent import AgentConfig
from agents.cost import CostSet
from agents.planners import CEM_300
from common.results import save
from experiments.evaluate import evaluate
from worldmodels.checkpoint import load_checkpoint, read_config, resave_checkpoint
from worldmodels.distance import with_head

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"reach": ("state", "pixels"), "wall": ("state",), "push": ("state",)}


def without_head(checkpoint: Path, folder: Path) -> Path:
    """A copy of ``checkpoint`` without its distance head (the plain latent distance)."""
    model, config = load_checkpoint(checkpoint)
    return resave_checkpoint(with_head(model, 0), folder, config)


def rates(result) -> tuple[float, float | None]:
    s = result.summary()
    steps = s["steps_to_goal"]["value"]
    return round(s["success_rate"]["value"], 3), None if steps is None else round(steps, 1)


def measure(scene: str, obs: str, episodes: int, seed: int, tmp: Path) -> dict:
    checkpoint = ROOT / "pretrained" / f"{scene}-{obs}"
    row: dict = {"scene": scene, "obs": obs, "episodes": episodes}
    if not read_config(checkpoint)["model"].get("distance_dim"):
        row["error"] = f"{checkpoint} has no distance head: ./lab distance"
        return row
    cfg = AgentConfig(search=CEM_300, decode=False)  # as its reference figures
    t0 = time.perf_counter()
    runs = {
        "latent": (checkpoint, CostSet(task="latent")),
        "plain": (without_head(checkpoint, tmp / f"{scene}-{obs}"), CostSet(task="latent")),
        "signal": (checkpoint, CostSet(task="signal")),
    }
    for name, (folder, costs) in runs.items():
        row[f"{name}_success"], row[f"steps_{name}"] = rates(
            evaluate(scene, folder, costs, cfg, episodes, seed=seed, device="cpu")
        )
    if obs == "state":  # the oracle does not depend on the model
        oracle = evaluate(scene, None, CostSet(), cfg, episodes, seed=seed, oracle=True)
        s = oracle.summary()
        row["oracle_success"] = round(s["oracle/success_rate"]["value"], 3)
    row["seconds"] = round(time.perf_counter() - t0)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="5 episodes, Reach from state only")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--scenes", default=",".join(MODELS))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    wanted = [(s, o) for s in args.scenes.split(",") if s in MODELS for o in MODELS[s]]
    episodes = 5 if args.quick else args.episodes
    if args.quick:
        wanted = [("reach", "state")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for scene, obs in wanted:
            row = measure(scene, obs, episodes, args.seed, Path(tmp))
            rows.append(row)
            print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    reach = [r for r in rows if r["scene"] == "reach" and "error" not in r]
    for r in reach:
        met = r["latent_success"] >= 0.9 and r["latent_success"] >= 0.9 * r["signal_success"]
        print(
            f"goal (reach {r['obs']}: latent >= 0.9 and >= 0.9 x signal): "
            f"{'met' if met else 'NOT met'}"
        )
    print(json.dumps(rows))
    save("label_free", rows, ap, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
