"""Make the shipped policies: System 1 for each shipped state model.

    ./lab pretrain             # after the world models (worldmodels/pretrain.py)
    python -m agents.pretrain --scenes reach,kitchen

For each scene in ``agents.system12.TRAINED_UNDER`` whose ``pretrained/<scene>-state``
exists, ``./lab distill`` runs into ``pretrained/policy-<scene>`` under that cost set
(Kitchen: the knife rule, trained in), seeded, with ``ROUNDS`` DAgger rounds. A folder
already made for the same model and settings is kept (distillation resumes from it);
one made on another model (the world model was trained again) is made anew.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from agents.policy import DistillConfig, Distiller
from agents.system12 import TRAINED_UNDER
from scenes.errors import LabError
from worldmodels.checkpoint import latent_identity

PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained"
ROUNDS = {"reach": 6, "kitchen": 8, "wall": 8, "push": 8}


def pretrain_policies(names: list[str]) -> list[Path]:
    made = []
    for key in names:
        checkpoint = PRETRAINED / f"{key}-state"
        if key not in TRAINED_UNDER or not (checkpoint / "config.json").exists():
            continue
        out = PRETRAINED / f"policy-{key}"
        made_on = out / "policy.json"
        if made_on.exists() and json.loads(made_on.read_text()).get("model_id") != (
            latent_identity(checkpoint)
        ):  # the world model was trained again: its latents mean other things now
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        costs = out / "costs.json"  # the cost set it is distilled under, beside it
        TRAINED_UNDER[key].save(costs)
        repo = PRETRAINED.parent
        cfg = DistillConfig(
            scene=key,
            checkpoint=str(checkpoint.relative_to(repo)),
            costs=str(costs.relative_to(repo)),
            out=str(out.relative_to(repo)),
            rounds=ROUNDS.get(key, 6),
            progress=False,
        )
        Distiller(cfg).run(progress=lambda done, total, key=key: print(f"{key}: {done}/{total}"))
        for extra in ("labels.safetensors",):  # the labels stay out of the repository
            (out / extra).unlink(missing_ok=True)
        made.append(out)
    return made


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", default=",".join(TRAINED_UNDER))
    args, _ = ap.parse_known_args(argv)  # ./lab pretrain passes its other options too
    try:
        made = pretrain_policies([s for s in args.scenes.split(",") if s])
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in made:
        print(f"{path}: {sum(f.stat().st_size for f in path.iterdir()) / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
