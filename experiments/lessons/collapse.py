"""Lesson 2, collapse: the JEPA without its EMA target and VICReg terms collapses
to a point, the effective rank of its latent falling to 0 as it trains."""

from __future__ import annotations

import tempfile
import time
from contextlib import nullcontext

import numpy as np
import torch

from experiments.lessons.common import Lesson, Live, Panel, episodes_for, stopped
from worldmodels.loss import effective_rank
from worldmodels.train import TrainConfig, Trainer

COLLAPSE_RUNS = {
    "with EMA target and VICReg": {},
    "without them": {
        "ema": False,
        "var_weight": 0.0,
        "cov_weight": 0.0,
    },
}


def collapse(
    live: Live,
    device,
    stop=None,
    turn=nullcontext,
    quick: bool = False,
    seed: int = 0,
    scene: str = "reach",
) -> dict:
    """Two JEPAs trained on the same Reach data for the same time, one without the
    EMA target and VICReg: the effective rank of each latent (exp of the entropy of its
    singular values, directions under 1 % of unit spread not counted) and the spread of
    every dimension on held-out states, as they train. ``seed`` picks the episodes and
    the networks' first weights (0: the shipped figures')."""

    seconds = 15.0 if quick else 45.0
    live.say("collecting Reach episodes (states only)", 0, 2)
    data = episodes_for("reach", 60, False, 1002 + seed)
    figures = {}
    for i, (name, over) in enumerate(COLLAPSE_RUNS.items()):
        live.say(f"training {name}: {seconds:.0f} s", i, 2)
        with tempfile.TemporaryDirectory() as out:
            cfg = TrainConfig(
                data=str(data),
                out=out,
                steps=100_000,
                batch=128,
                decoder=False,
                progress=False,
                seed=seed,
                **over,
            )
            trainer = Trainer(cfg, device)
            held_out = trainer.data.inputs(trainer.data.val_starts(0, limit=1024))
            t0, last = time.monotonic(), -1.0
            while True:
                stopped(stop)
                elapsed = time.monotonic() - t0
                if elapsed - last >= seconds / 20 or elapsed >= seconds:
                    with torch.no_grad(), turn():
                        z = trainer.model.encode(held_out)  # (N, D), held-out states
                    spread = z.std(dim=0).cpu().tolist()
                    rank = round(effective_rank(z), 2)
                    live.add(
                        design=name,
                        seconds=round(elapsed, 1),
                        step=trainer.step,
                        effective_rank=rank,
                        median_spread=round(float(np.median(spread)), 4),
                    )
                    live.picture(name, np.asarray(sorted(spread, reverse=True)))
                    last = elapsed
                    if elapsed >= seconds:
                        break
                with turn():
                    trainer.train_step()
        figures["rank_with" if i == 0 else "rank_without"] = rank
    live.say("done", 2, 2)
    live.set(**figures)
    return figures


LESSON = Lesson(
    "collapse",
    "Collapse",
    "Collapse: why the JEPA needs its EMA target and VICReg",
    "Trained only to predict its own embedding, an encoder finds the trivial "
    "answer: map everything to one point, and the prediction is perfect.",
    collapse,
    "Without the EMA target and the variance/covariance terms (the target is then "
    "the online encoder itself) the latent's spread falls below 1 % of unit in "
    "every dimension within seconds: effective rank 0, every state looks the same, "
    "and nothing can be planned on it. With them each dimension keeps a spread "
    "near 1 and the latent tens of independent directions.",
    "On the Train page (it collects a little data first if there is none), untick "
    "the EMA target, set the VICReg weights to 0 and watch the collapse health. "
    "Which one of the three alone is enough to prevent it?",
    {"x": "seconds", "y": ["effective_rank", "median_spread"], "color": "design"},
    scenes=("reach",),
    rule="none (no planning: the lesson trains two world models)",
    episodes=(60, 60),
    counted="Reach exploration episodes to train on (states); 15 s of training each "
    "in the short version, 45 s in the full one",
    words={
        "seconds": "time the whole lesson took",
        "rank_with": "effective rank of the latent after training, with EMA target and VICReg",
        "rank_without": "effective rank of the latent after training, without them",
    },
    panels=[
        Panel(
            "effective rank of the latent after training (0: collapsed)",
            "dimensions of 64",
            [
                ("with EMA target and VICReg", "effective rank", "rank_with"),
                ("without them", "effective rank", "rank_without"),
            ],
        ),
    ],
    seed_means="the episodes and the networks' first weights",
)
