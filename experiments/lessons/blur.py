"""Lesson 1, pixels blur, representations do not: a generative world model
(``worldmodels.generative``) beside the pixel JEPA on Kitchen, trained on the same
data with the same parts; their imagined frames, sharpness, probe error and planning."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch

from agents.agent import AgentConfig
from agents.cost import CostSet, Term
from common.paths import PRETRAINED
from experiments.evaluate import evaluate
from experiments.lessons.common import (
    SEARCH,
    Lesson,
    Live,
    Panel,
    episodes_for,
    step_interval,
    stopped,
    wilson,
)
from experiments.report import EvalResult
from scenes.kitchen import KNIFE_RULE
from worldmodels import compiled
from worldmodels.checkpoint import load_checkpoint
from worldmodels.data import WindowData
from worldmodels.generative import sharpness

HORIZONS = (1, 4, 16)
BLUR_MODELS = {"JEPA": "kitchen-pixels", "generative": "kitchen-generative"}
# the talk's guardrail, the person near: what each model's imagination must keep
KNIFE = CostSet(terms=[Term("slow near person", KNIFE_RULE, "hard")])


def person_region(real: torch.Tensor, grow: int = 2) -> torch.Tensor:
    """Where the person walks in each window: the pixels of the person's colour (the
    purple capsule, ``scenes.kitchen``) in any of the real frames, grown by ``grow``
    pixels to take in its edges. This is the uncertain part of the frame: the person's
    path is not in the actions, where the arm's is. real: uint8 (B, T, 64, 64, 3) ->
    bool (B, 64, 64)."""
    x = real.int()
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    purple = ((r - g) > 40) & ((b - g) > 40) & ((r - b).abs() < 60)  # (B, T, 64, 64)
    mask = purple.any(dim=1).float()[:, None]
    grown = torch.nn.functional.max_pool2d(mask, 2 * grow + 1, stride=1, padding=grow)
    return grown[:, 0] > 0


def region_sharpness(images: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """``worldmodels.generative.sharpness`` within ``region``: the mean squared
    difference of neighbouring pixels where both lie in it. images: (B, T, 64, 64, 3),
    region: bool (B, 64, 64) -> (B, T)."""
    x = images.float() / (255.0 if images.dtype == torch.uint8 else 1.0)
    m = region[:, None].float()  # (B, 1, H, W)
    mx = (m[..., :, 1:] * m[..., :, :-1])[..., None]  # both pixels of a pair inside
    my = (m[..., 1:, :] * m[..., :-1, :])[..., None]
    dx = ((x[..., :, 1:, :] - x[..., :, :-1, :]).pow(2) * mx).sum(dim=(-3, -2, -1))
    dy = ((x[..., 1:, :, :] - x[..., :-1, :, :]).pow(2) * my).sum(dim=(-3, -2, -1))
    pairs = (mx.sum(dim=(-3, -2, -1)) + my.sum(dim=(-3, -2, -1))).clamp(min=1) * 3
    return (dx + dy) / pairs


def blur(
    live: Live,
    device,
    stop=None,
    turn=nullcontext,
    quick: bool = False,
    seed: int = 0,
    scene: str = "kitchen",
) -> dict:
    """The generative model and the pixel JEPA, trained on the same Kitchen data with
    the same parts, on held-out episodes: their frames at h = 1, 4, 16 beside the real
    ones (the JEPA's through its display decoder), sharpness (image-gradient energy) of
    each relative to the real frame, on the whole frame and on the part where the person
    walks (``person_region``), probe error per horizon (h = 0: the frame and signals
    read back from the real frame's own latent, the decoder's and probes' own limit);
    then each plans the same episodes (success, ms per plan). ``seed`` picks the
    held-out episodes and the planned ones (0: the shipped figures')."""
    plans = 2 if quick else 10
    live.say("collecting held-out Kitchen episodes", 0, 3 + 2 * plans)
    data = WindowData(
        str(episodes_for("kitchen", 6, True, 1001 + seed)),
        "pixels",
        device,
        horizon=16,
        val_fraction=0.5,
        seed=0,
        frames=2,
    )
    starts = data.val_starts(16, limit=48)
    batch = data.windows(starts, 16)
    real = batch["pixels"]  # (B, 17, 64, 64, 3): each start's frame and the 16 after it
    real_sharp = sharpness(real).mean(0)  # (17,)
    region = person_region(real)
    real_there = region_sharpness(real, region).mean(0)  # (17,)
    live.tick()
    live.picture("real", real[0, list(HORIZONS)].cpu().numpy())
    for name, folder in BLUR_MODELS.items():
        stopped(stop)
        live.say(f"{name}: imagining 16 steps from {len(starts)} held-out frames")
        model, _ = load_checkpoint(PRETRAINED / folder, device)
        model.eval()
        with torch.no_grad(), turn():
            s0 = model.encode(
                {
                    "pixels": batch["obs"][:, 0],
                    "last_action": batch["last_action"][:, 0],
                    "state": batch["state"][:, 0],
                }
            )
            latents = torch.cat([s0[:, None], model.rollout(s0, batch["actions"])], 1)
            frames = model.decode(latents.flatten(0, 1)).view(real.shape)  # h = 0 .. 16
            probed = model.probes.normalised(latents)  # (B, 17, n) in units of std
        target = (batch["signals"] - model.probes.mean) / model.probes.std
        nrmse = (probed - target).pow(2).mean(0).sqrt().mean(-1)  # (17,)
        ratio = sharpness(frames).mean(0) / real_sharp  # (17,)
        there = region_sharpness(frames, region).mean(0) / real_there  # (17,)
        mse = (frames.float() - real.float()).div(255).pow(2).mean(dim=(0, 2, 3, 4))
        for h in range(17):
            live.add(
                model=name,
                h=h,
                sharpness_over_real=round(float(ratio[h]), 3),
                person_sharpness_over_real=round(float(there[h]), 3),
                probe_nrmse=round(float(nrmse[h]), 3),
                pixel_mse=round(float(mse[h]), 5),
            )
        live.picture(name, frames[0, list(HORIZONS)].cpu().numpy())
        key = name.lower()
        for h in (0, *HORIZONS):
            live.set(
                **{
                    f"{key}_sharpness_h{h}": round(float(ratio[h]), 3),
                    f"{key}_person_sharpness_h{h}": round(float(there[h]), 3),
                    f"{key}_probe_nrmse_h{h}": round(float(nrmse[h]), 3),
                }
            )
        live.tick()
    # Each episode planned by one model, then the other, both on the plain imagination:
    # compiling it in the background would fall on whichever model came first.
    results: dict[str, list] = {name: [] for name in BLUR_MODELS}
    with compiled.off():
        _plan_both(live, results, plans, device, stop, turn, seed)
    for name, done in results.items():
        key = name.lower()
        eps = [e for r in done for e in r.episodes if e["agent"] == "model"]
        summary = EvalResult("kitchen", {"seed": 7 + seed}, eps).summary()
        broke = sum(e["violation_steps"] for e in eps) / max(1, sum(e["steps"] for e in eps))
        won, ms = np.mean([e["success"] for e in eps]), np.mean([r.plan_ms() for r in done])
        live.set(
            **{
                f"{key}_success": round(float(won), 3),
                f"{key}_violation_step_rate": round(broke, 4),
                f"{key}_plan_ms": round(float(ms), 2),
            }
        )
        live.interval(
            **{
                f"{key}_success": wilson(sum(e["success"] for e in eps), len(eps)),
                f"{key}_violation_step_rate": step_interval(summary),
            }
        )
    live.say("done")
    return live.copy().figures


def _plan_both(live: Live, results: dict, plans: int, device, stop, turn, seed: int) -> None:
    for ep in range(plans):
        for name, folder in BLUR_MODELS.items():
            live.say(f"{name}: planning Kitchen episode {ep + 1} of {plans}")
            result = evaluate(
                "kitchen",
                PRETRAINED / folder,
                KNIFE,
                AgentConfig(search=SEARCH, decode=False),
                1,
                seed=7 + seed + ep,
                device=device,
                stop=stop,
                turn=turn,
                options={"person_near": True},
            )
            stopped(stop)
            results[name].append(result)
            live.tick()


LESSON = Lesson(
    "blur",
    "Pixels blur",
    "Pixels blur, representations do not",
    "A world model trained to predict pixels spends itself on details it cannot "
    "predict and averages them into a blur; one that predicts in representation "
    "space keeps what matters for acting.",
    blur,
    "Measured where the person walks, the part of the frame whose future the actions do "
    "not decide, the generative model's imagined frames keep 0.23 of the real frame's "
    "sharpness at h = 16 and the JEPA's decoded ones 0.27 (the whole frame: "
    "0.47 and 0.53). The generative frames are softer, but only a little, and the blur "
    "hardly grows with the horizon (0.24 at h = 0). So these pictures do not show the "
    "claim's blur, and the figures say part of why: both models draw through the same "
    "thin decoder, which already loses most of the person's edges when it redraws the "
    "real frame's own latent (h = 0: 0.24 and 0.30), so what the prediction adds is small "
    "beside it. The person's walk is also mostly predictable from two frames (a straight "
    "line at a steady speed; only its turns are not), and where it turns the generative "
    "model draws the person where it was heading rather than a smear (the frames at h = "
    "16): the shipped model, small and trained for 1500 steps, has not learned the "
    "average a pixel loss rewards there. What differs is what each "
    "imagination keeps: the generative model's probes lose the scene as it looks ahead "
    "(at h = 16 about twice the JEPA's error, the person's position most), and planning "
    "with the knife rule it breaks the rule on more real steps, since it does not foresee "
    "where the person will be; at the same success and time per plan. (Its pixel error "
    "is the lower one for most of the horizon: pixels are what it was trained for, and "
    "an average frame scores well on them.)",
    "Plan with the generative model on the Plan page (World model: "
    "`kitchen-generative`, the person near) and watch its imagined frames and "
    "the knife rule. Give the generative model a wider decoder or longer training "
    "(`./lab train --obs pixels --objective generative`): do the frames sharpen, and "
    "does the person come back into its probes?",
    {
        "x": "h",
        "y": ["sharpness_over_real", "person_sharpness_over_real", "probe_nrmse", "pixel_mse"],
        "color": "model",
    },
    tuple(BLUR_MODELS.values()),
    scenes=("kitchen",),
    rule=f"the knife rule, slow near person (`{KNIFE_RULE}`), while each model plans",
    situation="",
    episodes=(2, 10),
    counted="planned Kitchen episodes per model (the person starting near the board); "
    "up to 48 windows of 16 steps from 3 held-out episodes for the frames",
    words={
        "seconds": "time the whole lesson took",
        **{
            f"{k}_{what}_h{h}": f"{words}, {name}, h = {h}"
            for k, name in (("jepa", "JEPA"), ("generative", "generative"))
            for what, words in (
                ("sharpness", "sharpness of the whole imagined frame over the real one's"),
                ("person_sharpness", "sharpness where the person walks, imagined over real"),
                ("probe_nrmse", "probes' error in signal spreads"),
            )
            for h in (0, *HORIZONS)
        },
        **{
            f"{k}_{what}": f"{words}, {name}"
            for k, name in (("jepa", "JEPA"), ("generative", "generative"))
            for what, words in (
                ("success", "share of episodes reaching the goal"),
                ("violation_step_rate", "share of real steps breaking the knife rule"),
                ("plan_ms", "time per plan"),
            )
        },
    },
    panels=[
        Panel(
            "sharpness where the person walks, imagined over real (1: as sharp)",
            "ratio",
            [
                (f"h = {h}", name, f"{name.lower()}_person_sharpness_h{h}")
                for h in HORIZONS
                for name in BLUR_MODELS
            ],
        ),
        Panel(
            "sharpness of the whole frame, imagined over real (1: as sharp)",
            "ratio",
            [
                (f"h = {h}", name, f"{name.lower()}_sharpness_h{h}")
                for h in HORIZONS
                for name in BLUR_MODELS
            ],
        ),
        Panel(
            "probes' error, in each signal's spread",
            "spreads",
            [
                (f"h = {h}", name, f"{name.lower()}_probe_nrmse_h{h}")
                for h in HORIZONS
                for name in BLUR_MODELS
            ],
            lower_better=True,
        ),
        Panel(
            "share of real steps breaking the knife rule while planning",
            "%",
            [("planning", name, f"{name.lower()}_violation_step_rate") for name in BLUR_MODELS],
            lower_better=True,
        ),
    ],
    seed_means="the held-out episodes and the planned ones",
)
