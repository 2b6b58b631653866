"""Make the shipped policies (System 1) and calibrated bounds of each shipped state model.

    ./lab pretrain             # after the world models (worldmodels/pretrain.py)
    python -m experiments.pretrain --scenes reach,kitchen

For each scene in ``experiments.system12.TRAINED_UNDER`` whose ``pretrained/<scene>-state``
exists, ``./lab distill`` runs into ``pretrained/policy-<scene>`` under that cost set
(Kitchen: the knife rule, trained in), seeded, with the scene's ``SETTINGS``, its
starts and goals from the model's exploration data (``data/pretrain/<scene>``, which
``worldmodels/pretrain.py`` collects; from scene resets where it is absent, as the
policies shipped now were made). A folder
already made for the same model and settings is kept (distillation resumes from it);
one made on another model (the world model was trained again) is made anew.
Then each model's conformal bounds are measured on 60 of its agent's own
episodes under the same cost set (``experiments.calibrate``; the config only; also the
occluded kitchen's pixel models, under the knife rule), and
Wall and Push get a learned high level (``./lab highlevel`` into
``pretrained/high-<scene>``, from the same exploration data) for hierarchical
planning.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from agents.agent import AgentConfig
from common.errors import LabError
from experiments.calibrate import calibrate_closed_loop
from experiments.distill import DistillConfig, Distiller
from experiments.system12 import TRAINED_UNDER
from worldmodels.highlevel import HighConfig, HighTrainer, load_high, save_high

log = logging.getLogger(__name__)
PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained"
# DAgger rounds and how far (imagined steps) the policy acts out from each reset. Wall and
# Push need long rollouts: their policies must see the states past the door and behind
# the block, which 20 steps from a reset rarely reach. Wall's policy reached the goal in
# 0 of 10 episodes (8 rounds, 20 steps), 2 (10, 60), 4 (16, 100) and 6 (30, 150).
SETTINGS = {
    "reach": {"rounds": 6},
    "kitchen": {"rounds": 8},
    "wall": {"rounds": 30, "rollout": 150},
    "push": {"rounds": 30, "rollout": 150},
}


def pretrain_policies(names: list[str]) -> list[Path]:
    made = []
    for key in names:
        checkpoint = PRETRAINED / f"{key}-state"
        if key not in TRAINED_UNDER or not (checkpoint / "config.json").exists():
            continue
        out = PRETRAINED / f"policy-{key}"
        out.mkdir(parents=True, exist_ok=True)
        costs = out / "costs.json"  # the cost set it is distilled under, beside it
        TRAINED_UNDER[key].save(costs)
        repo = PRETRAINED.parent
        data = repo / "data" / "pretrain" / key  # the world model's exploration data
        cfg = DistillConfig(
            scene=key,
            checkpoint=str(checkpoint.relative_to(repo)),
            costs=str(costs.relative_to(repo)),
            out=str(out.relative_to(repo)),
            data=str(data.relative_to(repo)) if (data / "manifest.json").exists() else "",
            progress=False,
            **SETTINGS.get(key, {}),
        )
        try:
            distiller = Distiller(cfg)
        except LabError as e:  # made with other settings, or on a model trained again
            # since (its latents mean other things now): make it anew
            log.info("%s: %s; distilling again", out, e)
            for f in ("policy.json", "policy.safetensors", "distill.json", "labels.safetensors"):
                (out / f).unlink(missing_ok=True)
            distiller = Distiller(cfg)
        try:
            distiller.run(progress=lambda done, total, key=key: print(f"{key}: {done}/{total}"))
        finally:
            distiller.close()
        (out / "labels.safetensors").unlink(missing_ok=True)  # out of the repository
        made.append(out)
    return made


HIGH_LEVELS = {"wall": {"subgoal": True}, "push": {"subgoal": True}}  # -> HighConfig settings


def pretrain_high(names: list[str]) -> list[Path]:
    """The high level of each scene in ``HIGH_LEVELS`` (agents/hierarchy.py), on its
    state model's exploration data; one made on another model is made anew."""
    import torch

    made = []
    repo = PRETRAINED.parent
    for key in names:
        checkpoint = PRETRAINED / f"{key}-state"
        data = repo / "data" / "pretrain" / key
        if key not in HIGH_LEVELS or not (checkpoint / "config.json").exists():
            continue
        if not (data / "manifest.json").exists():
            log.warning("%s: no exploration data at %s; its high level is not made", key, data)
            continue
        out = PRETRAINED / f"high-{key}"
        rel = lambda p: str(p.relative_to(repo))  # noqa: E731
        cfg = HighConfig(
            checkpoint=rel(checkpoint),
            data=rel(data),
            out=rel(out),
            progress=False,
            **HIGH_LEVELS[key],
        )
        try:
            trainer = HighTrainer(cfg)
        except LabError as e:  # other settings, or a model trained again since
            log.info("%s: %s; training again", out, e)
            for f in ("high.json", "high.safetensors"):
                (out / f).unlink(missing_ok=True)
            trainer = HighTrainer(cfg)
        print(f"{key} high level: {trainer.run()}")
        high = load_high(out, checkpoint, torch.device("cpu"))
        save_high(high, out, high.info)  # without the optimiser's state: out of the repository
        made.append(out)
    return made


CALIBRATION_EPISODES = 60  # closed-loop episodes per shipped model's conformal bounds
# Pixel models whose agents plan with the calibrated margin (the Out of sight lesson,
# experiments.lessons.memory): the checkpoints of each scene, and Kitchen's knife rule
CALIBRATED_PIXELS = {"occluded": ("occluded-pixels", "occluded-memory")}


def calibrate_models(names: list[str]) -> list[Path]:
    """The conformal bounds of each shipped state model and of the pixel models in
    ``CALIBRATED_PIXELS`` (``experiments.calibrate``), measured on its agent's own
    episodes under the scene's cost set (Kitchen's, the occluded kitchen's: the knife
    rule)."""
    made = []
    for key in names:
        todo = [(f"{key}-state", TRAINED_UNDER.get(key))]
        todo += [(name, TRAINED_UNDER["kitchen"]) for name in CALIBRATED_PIXELS.get(key, ())]
        for name, costs in todo:
            checkpoint = PRETRAINED / name
            if costs is None or not (checkpoint / "config.json").exists():
                continue
            calibrate_closed_loop(
                checkpoint, costs, AgentConfig(), CALIBRATION_EPISODES, device="cpu"
            )
            print(f"{name}: calibrated on {CALIBRATION_EPISODES} episodes")
            made.append(checkpoint)
    return made


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--scenes", default=",".join({**TRAINED_UNDER, **HIGH_LEVELS, **CALIBRATED_PIXELS})
    )
    args, _ = ap.parse_known_args(argv)  # ./lab pretrain passes its other options too
    try:
        names = [s for s in args.scenes.split(",") if s]
        made = pretrain_policies(names)
        calibrate_models(names)
        made += pretrain_high(names)
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in made:
        print(f"{path}: {sum(f.stat().st_size for f in path.iterdir()) / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
