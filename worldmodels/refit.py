"""Fit a checkpoint's display decoder again, the rest of the model frozen.

    ./lab refit-decoder --checkpoint pretrained/reach-state --data data/pretrain/reach

The decoder trains beside the world model on a few frames per step, and a
small object (the 5-pixel Reach disc) barely moves a plain pixel MSE: the
decoded frames came out as an empty floor. This fits the decoder alone, on
detached latents of the frozen encoder, with the foreground-weighted loss of
``worldmodels.loss.decoder_loss`` and larger batches. Encoder, predictor and
probes are untouched, so planning and every figure of the checkpoint stay
exactly as they were; only the pictures change. The checkpoint is saved back
atomically in its own precision, with ``decoder_refit`` in its JSON.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from common.config import parse_config
from common.device import choose_device
from common.errors import LabError
from worldmodels.checkpoint import load_checkpoint, resave_checkpoint
from worldmodels.data import WindowData
from worldmodels.loss import decoder_loss
from worldmodels.model import WorldModel

log = logging.getLogger(__name__)


@dataclass
class RefitConfig:
    checkpoint: str = field(default="", metadata={"help": "checkpoint folder", "required": True})
    data: str = field(default="", metadata={"help": "dataset with pixels", "required": True})
    steps: int = field(default=1500, metadata={"help": "decoder optimiser steps"})
    batch: int = field(default=64, metadata={"help": "frames per step"})
    lr: float = field(default=2e-3, metadata={"help": "Adam learning rate"})
    seed: int = field(default=0, metadata={"help": "seed of the frame sampler"})
    device: str = field(default="auto", metadata={"help": "auto (cuda when present), cpu, cuda"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})


def refit_decoder(
    model: WorldModel, data: WindowData, cfg: RefitConfig, device: torch.device
) -> dict[str, float]:
    """Train ``model.decoder`` alone; returns the held-out loss before and after."""
    if model.decoder is None or data.pixels is None:
        raise LabError("refitting the decoder needs a model with a decoder and data with pixels")
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    rows = torch.cat([torch.arange(s, s + n) for s, n in data.episodes[data.train_ids]])
    held = torch.cat([torch.arange(s, s + n) for s, n in data.episodes[data.val_ids]])
    held = held[torch.linspace(0, len(held) - 1, min(256, len(held))).long()].to(device)

    @torch.no_grad()
    def latents(idx: torch.Tensor) -> torch.Tensor:
        return model.encode(data.inputs(idx))

    def images(idx: torch.Tensor) -> torch.Tensor:
        return data.pixels[idx].permute(0, 3, 1, 2).float() / 255.0

    @torch.no_grad()
    def held_out() -> float:
        model.decoder.eval()
        loss = decoder_loss(model.decoder(latents(held)), images(held))
        model.decoder.train()
        return float(loss)

    before = held_out()
    opt = torch.optim.Adam(model.decoder.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps, eta_min=cfg.lr / 10)
    bar = tqdm(range(cfg.steps), desc="decoder", disable=None if cfg.progress else True)
    for step in bar:
        idx = rows[torch.randint(len(rows), (cfg.batch,), generator=gen)].to(device)
        loss = decoder_loss(model.decoder(latents(idx)), images(idx))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4g}")
    model.decoder.eval()
    return {"held_out_before": round(before, 6), "held_out_after": round(held_out(), 6)}


def refit_checkpoint(cfg: RefitConfig) -> dict:
    """Load, refit, save back in place (same precision); returns what was measured."""
    device = choose_device(cfg.device)
    model, config = load_checkpoint(cfg.checkpoint, device=device)
    data = WindowData(
        cfg.data, config["obs"], device, horizon=1, seed=cfg.seed, pixels=True, frames=model.frames
    )
    if data.scene != config["scene"]:
        raise LabError(f"{cfg.data} holds {data.scene} data; the checkpoint is {config['scene']}")
    t0 = time.perf_counter()
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.decoder.parameters():
        p.requires_grad_(True)
    figures = refit_decoder(model, data, cfg, device)
    figures["seconds"] = round(time.perf_counter() - t0, 1)
    figures["steps"] = cfg.steps
    figures["batch"] = cfg.batch
    resave_checkpoint(model, cfg.checkpoint, config, decoder_refit=figures)
    return figures


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse_config(RefitConfig, argv, "lab refit-decoder", __doc__.split("\n\n")[0])
    try:
        figures = refit_checkpoint(cfg)
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{cfg.checkpoint}: {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
