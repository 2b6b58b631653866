"""How well the world models imagine, against two baselines, in one run.

    ./lab bench wm_quality [--quick] [--checkpoints pretrained] [--train-seconds 60]

1. Trains a Reach state model from scratch for ``--train-seconds`` on fresh
   data (the "trains in 60 s on 2 cores" figure).
2. Evaluates it and every checkpoint in ``--checkpoints`` on freshly
   collected held-out episodes (a seed no training run used): the probes'
   nRMSE of imagined signals at horizons 1, 4 and 16 (open loop on the real
   actions), the same for copy-last (nothing moves) and a linear dynamics
   model fitted on states (fitted on the other half of the fresh episodes),
   and the effective rank of the latents.

The last line is JSON: a list of objects with keys ``scene``, ``obs``,
``nrmse_h1``, ``nrmse_h4``, ``nrmse_h16``, ``copy_last_nrmse_h16``,
``linear_nrmse_h16``, ``effective_rank``, ``train_seconds``, ``source``.
``--quick`` (under 60 s) trains for 15 s on less data and evaluates only the
Reach state checkpoint.
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

from common.device import choose_device
from common.results import save
from scenes.collect import CollectConfig, collect
from worldmodels.checkpoint import load_checkpoint
from worldmodels.data import WindowData
from worldmodels.loss import effective_rank
from worldmodels.metrics import copy_last_nrmse, linear_nrmse, model_nrmse
from worldmodels.train import TrainConfig, Trainer

EVAL_SEED = 1000  # no training run collects with this seed


def evaluate(model, data: WindowData, horizon: int = 16) -> dict:
    curve = model_nrmse(model, data, horizon)
    with torch.no_grad():
        z = model.encode(data.inputs(data.val_starts(0, limit=2048)))
    row = {f"nrmse_h{h}": round(float(curve[h - 1]), 4) for h in (1, 4, 16)}
    row["copy_last_nrmse_h16"] = round(float(copy_last_nrmse(data, horizon)[-1]), 4)
    row["linear_nrmse_h16"] = round(float(linear_nrmse(data, horizon)[-1]), 4)
    row["effective_rank"] = round(effective_rank(z), 2)
    return row


def fresh_data(tmp: Path, scene: str, episodes: int, seed: int, cache: dict) -> str:
    key = (scene, seed)
    if key not in cache:
        out = tmp / f"{scene}-{seed}"
        collect(
            CollectConfig(scene=scene, out=str(out), episodes=episodes, seed=seed, progress=False)
        )
        cache[key] = str(out)
    return cache[key]


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="under 60 s")
    ap.add_argument("--checkpoints", default="pretrained", help="folder of checkpoints")
    ap.add_argument("--train-seconds", type=float, default=None, help="default 60 (15 quick)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = choose_device(args.device)
    seconds = args.train_seconds or (15.0 if args.quick else 60.0)
    eval_episodes = 30 if args.quick else 60
    rows = []
    cache: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # 1. Reach from state, trained here against the clock.
        train_data = fresh_data(tmp, "reach", 100 if args.quick else 300, 0, cache)
        trainer = Trainer(
            TrainConfig(
                data=train_data,
                out=str(tmp / "run"),
                steps=100000,
                seconds=seconds,
                eval_every=10**9,
                progress=False,
            ),
            device=device,
        )
        trainer.run()
        eval_data = WindowData(
            fresh_data(tmp, "reach", eval_episodes, EVAL_SEED, cache),
            "state",
            device,
            16,
            val_fraction=0.5,
            seed=0,
            pixels=False,
        )
        row = {
            "scene": "reach",
            "obs": "state",
            **evaluate(trainer.model, eval_data),
            "train_seconds": round(trainer.elapsed, 1),
            "steps": trainer.step,
            "source": f"trained here on {device}",
        }
        rows.append(row)
        print(f"reach/state trained here: {trainer.step} steps in {trainer.elapsed:.0f} s; {row}")

        # 2. The shipped checkpoints.
        folders = sorted(p.parent for p in Path(args.checkpoints).glob("*/config.json"))
        if args.quick:
            folders = [f for f in folders if f.name == "reach-state"]
        for folder in folders:
            model, config = load_checkpoint(folder, device)
            scene, obs = config["scene"], config["obs"]
            path = fresh_data(tmp, scene, eval_episodes, EVAL_SEED, cache)
            data = WindowData(
                path,
                obs,
                device,
                16,
                val_fraction=0.5,
                seed=0,
                pixels=obs == "pixels",
                frames=model.frames,
            )
            row = {
                "scene": scene,
                "obs": obs,
                **evaluate(model, data),
                "train_seconds": config.get("train_seconds"),
                "source": str(folder),
            }
            beats = (
                row["nrmse_h16"] < row["copy_last_nrmse_h16"]
                and row["nrmse_h16"] < row["linear_nrmse_h16"]
            )
            row["beats_baselines_h16"] = beats
            rows.append(row)
            print(
                f"{folder}: h1 {row['nrmse_h1']} h4 {row['nrmse_h4']} h16 {row['nrmse_h16']} "
                f"(copy-last {row['copy_last_nrmse_h16']}, linear {row['linear_nrmse_h16']}), "
                f"rank {row['effective_rank']}, trained {row['train_seconds']} s"
            )
    print(json.dumps(rows))
    save("wm_quality", rows, ap, args, device=device)
    return 0


if __name__ == "__main__":
    t0 = time.perf_counter()
    code = main()
    print(f"# {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    sys.exit(code)
