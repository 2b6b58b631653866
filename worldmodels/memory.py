"""A pixel world model with memory: the latent as a belief carried through what is hidden.

    ./lab memory --base pretrained/occluded-pixels --data data/pretrain/occluded \\
        --out pretrained/occluded-memory

A pixel JEPA sees its last frames: whatever leaves the view leaves the latent. Here the
latent is a belief: each step the predictor says what it expects from the last belief
and the action taken (the prior), and the frame's embedding corrects it
(``worldmodels.model.BeliefUpdate``): a person behind a screen stays where the prior
carries them. This is the filtering step of Dreamer's recurrent state-space model
(Hafner et al. 2019: prior from the dynamics, posterior from the observation), kept in
the JEPA's latent space and trained with the JEPA's own objective: from every belief
of a window, the predictor's open-loop rollout is pulled towards the beliefs an EMA
copy of the filter forms from the real frames (their future, so a belief that forgot
the person cannot predict where they come out), with VICReg against collapse; probes
and the display decoder read detached beliefs, as ever.

The frame encoder is the base model's, frozen (as DINO-WM keeps DINOv2's): its
embeddings of the whole dataset are computed once, so a training step is the filter
and the predictor over windows of embeddings, no image work. The base model's
predictor, probes and decoder are where training starts; the update starts as "trust
the frame" (the base model exactly) and learns what a frame cannot show.

The gap between prior and belief is the model's surprise (``worldmodels.model.surprise``):
a frame that shows what the belief expected corrects nothing; a person who vanishes in the open
(``scenes.occluded``'s ``event``) corrects a lot. Violation of expectation, as V-JEPA
measured it on IntPhys (Garrido et al. 2025).
"""

from __future__ import annotations

import copy
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn import functional as F
from tqdm import tqdm

from common.config import changed_flags, parse_config
from common.device import choose_device
from common.errors import LabError
from worldmodels.checkpoint import load_checkpoint, save_checkpoint
from worldmodels.data import WindowData
from worldmodels.loss import decoder_loss, ema_momentum, ema_toward, vicreg_terms
from worldmodels.model import ModelConfig, WorldModel, surprise

log = logging.getLogger(__name__)


@dataclass
class MemoryConfig:
    """A memory model grown from a pixel checkpoint; see the module docstring."""

    base: str = field(
        default="", metadata={"help": "pixel checkpoint to grow from", "required": True}
    )
    data: str = field(default="", metadata={"help": "its dataset (with pixels)", "required": True})
    out: str = field(default="", metadata={"help": "checkpoint folder to write", "required": True})
    steps: int = field(default=3000, metadata={"help": "optimiser steps"})
    batch: int = field(default=32, metadata={"help": "windows per step"})
    # Measured on the occluded kitchen's two screens (issue 33's note; the error of the
    # person's place read from the belief on held-out steps hidden after being seen, against
    # in full view, ./lab bench memory): windows of 48 steps, horizon 8, all windows drawn
    # alike, 0.295 / 0.079 m; horizon 16 with half of each batch prioritised, 0.222 /
    # 0.090; windows of 64 and horizon 32, 0.259 / 0.079; the belief pulled to its prior
    # (Dreamer's KL balancing, posterior half, weight 1), 0.292 hidden (all hidden steps);
    # the rollouts' pull to the EMA beliefs at a quarter, 0.230 / 0.084; the same on four
    # times the episodes, 0.254 / 0.076; with the gate, 0.216 / 0.091; whole episodes (100
    # steps, rollouts from 16 of their beliefs), 0.188 / 0.072; whole episodes and the
    # gate, 0.170 / 0.070 (the default); on four times the episodes 0.092 / 0.057, and
    # 6000 steps 0.050 / 0.041 (./lab pretrain's).
    window: int = field(
        default=100,
        metadata={"help": "steps of each window the filter runs over (Kitchen's whole episode)"},
    )
    burn_in: int = field(
        default=16, metadata={"help": "first steps of a window that only fill the belief"}
    )
    horizon: int = field(default=16, metadata={"help": "open-loop steps in the loss"})
    starts: int = field(
        default=16,
        metadata={"help": "beliefs of each window the rollouts start from, drawn (0: every one)"},
    )
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate (cosine to 10%)"})
    prioritise: float = field(
        default=0.5,
        metadata={
            "help": "share of each batch drawn in proportion to the windows' last loss "
            "(prioritised replay): the few windows where the person comes out again"
        },
    )
    gate: bool = field(
        default=True,
        metadata={"help": "a learned gate in 0..1 on each dimension of the belief's correction"},
    )
    seed: int = field(default=0, metadata={"help": "seed of the batches"})
    device: str = field(default="auto", metadata={"help": "auto (cuda when present), cpu, cuda"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})


def run_filter(
    model: WorldModel,
    embeddings: torch.Tensor,
    actions: torch.Tensor,
    memory=None,
    predictor=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Beliefs along sequences: frame embeddings (B, T, D) and the actions between them
    (B, T-1, A) -> (beliefs, priors), each (B, T, D). The first belief is the first
    frame's embedding, and so is its prior (nothing remembered). ``memory`` and
    ``predictor`` default to the model's (training passes their EMA copies for the
    targets)."""
    memory = model.memory if memory is None else memory
    predictor = model.predictor if predictor is None else predictor
    s = embeddings[:, 0]  # nothing remembered yet: what is seen
    beliefs, priors = [s], [s]
    for t in range(1, embeddings.shape[1]):
        prior = predictor(s, actions[:, t - 1])
        s = memory(embeddings[:, t], prior)
        beliefs.append(s)
        priors.append(prior)
    return torch.stack(beliefs, 1), torch.stack(priors, 1)


@torch.no_grad()
def along(
    model: WorldModel,
    pixels: torch.Tensor,
    actions: torch.Tensor,
    states: torch.Tensor | None = None,
) -> tuple:
    """One episode's latents and the model's surprise at each: frames (T, 64, 64, 3)
    uint8, the actions taken between them (T-1, A) and, for a model with proprio, the
    states (T, S) -> (latents (T, D), surprise (T,),
    0 at the first step). With memory the latents are beliefs and the surprise their gap
    to the prior; without, the frames' own latents and their gap to the predictor's step
    from the one before (the plain prediction error, V-JEPA's measure)."""
    T = len(pixels)
    idx = torch.arange(T, device=pixels.device)
    stack = torch.stack([(idx - k).clamp(min=0) for k in range(model.frames - 1, -1, -1)], 1)
    frames = pixels[stack] if model.frames > 1 else pixels  # (T, F, 64, 64, 3), oldest first
    last = torch.cat([actions.new_zeros(1, actions.shape[-1]), actions])  # (T, A)
    e = model.encoder(frames, last if model.cfg.last_action else None, states)  # (T, D)
    if model.memory is not None:
        beliefs, priors = run_filter(model, e[None], actions[None])
        latents, priors = beliefs[0], priors[0]
    else:
        latents, priors = e, torch.cat([e[:1], model.predictor(e[:-1], actions)])
    return latents, surprise(latents, priors)


@torch.no_grad()
def frame_embeddings(model: WorldModel, data: WindowData, chunk: int = 512) -> torch.Tensor:
    """The frozen frame encoder's embedding of every row of ``data`` (N, D)."""
    model.eval()
    out = []
    for rows in torch.arange(len(data.state), device=data.device).split(chunk):
        last = data.last_action[rows] if model.cfg.last_action else None
        out.append(model.encoder(data.obs_at(rows), last, data.state[rows]))
    return torch.cat(out)


def grow(base: WorldModel, gate: bool = False) -> WorldModel:
    """A memory model with ``base``'s encoder, predictor, probes and decoder (no
    steps-to-go head: its latent space is the base's no longer)."""
    d = base.cfg.to_dict()
    d.update(memory=True, memory_gate=gate, distance_dim=0)
    model = WorldModel(ModelConfig.from_dict(d)).to(base.device)
    own = {k: v for k, v in base.state_dict().items() if not k.startswith("distance.")}
    missing, unexpected = model.load_state_dict(own, strict=False)
    assert not unexpected and all(k.startswith("memory.") for k in missing), missing
    return model


class MemoryTrainer:
    """Trains a memory model's update, predictor, probes and decoder on a frozen encoder."""

    def __init__(self, cfg: MemoryConfig, device: torch.device | None = None) -> None:
        if cfg.burn_in + cfg.horizon >= cfg.window:
            raise LabError("the window must be longer than the burn-in plus the horizon")
        self.cfg = cfg
        self.device = device or choose_device(cfg.device)
        base, self.base_config = load_checkpoint(cfg.base, device=self.device)
        if base.cfg.obs != "pixels" or base.cfg.memory:
            raise LabError(f"{cfg.base}: memory grows from a pixel model without one")
        self.data = WindowData(
            cfg.data,
            "pixels",
            self.device,
            cfg.window,
            seed=self.base_config.get("split", {}).get("seed", 0),
            pixels=True,
            frames=base.frames,
        )
        if self.data.scene != self.base_config["scene"]:
            scene = self.base_config["scene"]
            raise LabError(f"{cfg.data} holds {self.data.scene} data, not {scene}")
        torch.manual_seed(cfg.seed)
        self.model = grow(base, cfg.gate)
        self.model.encoder.requires_grad_(False)
        self.embeddings = frame_embeddings(self.model, self.data)  # (N, D)
        self.target_memory = copy.deepcopy(self.model.memory).requires_grad_(False)
        self.target_predictor = copy.deepcopy(self.model.predictor).requires_grad_(False)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.Adam(params, lr=cfg.lr)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        # each training window's last loss (prioritised replay, Schaul et al. 2016);
        # unseen windows start at the top so that each is tried
        self.priority = torch.full((len(self.data.train_starts),), 1e3)

    def windows(self, starts: torch.Tensor) -> dict[str, torch.Tensor]:
        rows = starts[:, None] + torch.arange(self.cfg.window + 1, device=self.device)
        return {
            "rows": rows,
            "e": self.embeddings[rows],
            "actions": self.data.actions[rows[:, :-1]],
            "signals": self.data.signals[rows],
        }

    def losses(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The loss terms by name with ``total``, and each window's prediction loss (B,)
        (``prioritise`` draws windows by it)."""
        cfg, model = self.cfg, self.model
        beliefs, _ = run_filter(model, batch["e"], batch["actions"])  # (B, T, D)
        with torch.no_grad():
            targets, _ = run_filter(
                model, batch["e"], batch["actions"], self.target_memory, self.target_predictor
            )
        B, T, D = beliefs.shape
        H, k0 = cfg.horizon, cfg.burn_in
        starts = torch.arange(k0, T - H, device=self.device)  # (K,)
        if 0 < cfg.starts < len(starts):  # a long window: a draw of them, evenly spread
            offset = int(torch.randint(len(starts), (1,), generator=self.gen))
            pick = (offset + torch.arange(cfg.starts) * len(starts) // cfg.starts) % len(starts)
            starts = starts[pick.to(self.device)]
        s0 = beliefs[:, starts].flatten(0, 1)  # (B*K, D)
        steps = starts[:, None] + torch.arange(H, device=self.device)  # (K, H)
        acts = batch["actions"][:, steps].flatten(0, 1)  # (B*K, H, A)
        imagined = model.rollout(s0, acts).view(B, len(starts), H, D)
        gap = (imagined - targets[:, steps + 1]).pow(2)  # (B, K, H, D)
        terms = {"pred": gap.mean()}
        # a belief must explain the frame it was formed with, and an imagined one the
        # frame that came: no sluggish belief (a target made predictable by ignoring the
        # frames), and no forgetting what will be seen again
        seen = model.memory.expect
        terms["seen"] = F.mse_loss(seen(beliefs[:, k0:]), batch["e"][:, k0:])
        missed = (seen(imagined) - batch["e"][:, steps + 1]).pow(2)  # (B, K, H, D)
        terms["seen_imagined"] = missed.mean()
        window_loss = (gap + missed).detach().mean(dim=(1, 2, 3))  # (B,)
        kept = beliefs[:, k0:]
        terms["var"], terms["cov"] = vicreg_terms(kept.flatten(0, 1))
        probes = model.probes
        signals = (batch["signals"] - probes.mean) / probes.std  # (B, T, n)
        terms["probe"] = F.mse_loss(probes.normalised(kept.detach()), signals[:, k0:])
        terms["probe_imagined"] = F.mse_loss(
            probes.normalised(imagined.detach()), signals[:, steps + 1]
        )
        if model.decoder is not None:
            at = torch.randint(k0, T, (B,), generator=self.gen).to(self.device)
            rows = batch["rows"][torch.arange(B, device=self.device), at][:16]
            img = self.data.pixels[rows].permute(0, 3, 1, 2).float() / 255.0
            pick = beliefs[torch.arange(B, device=self.device), at][:16].detach()
            terms["decoder"] = decoder_loss(model.decoder(pick), img)
        weights = {"cov": 0.04}
        terms["total"] = sum(weights.get(k, 1.0) * v for k, v in terms.items())
        return terms, window_loss

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        self.model.train()
        frac = self.step / max(cfg.steps, 1)
        for group in self.opt.param_groups:
            group["lr"] = cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        ranked = round(cfg.batch * cfg.prioritise)
        pick = torch.randint(len(self.priority), (cfg.batch - ranked,), generator=self.gen)
        if ranked:
            top = torch.multinomial(self.priority, ranked, replacement=True, generator=self.gen)
            pick = torch.cat([pick, top])
        batch = self.windows(self.data.train_starts[pick.to(self.device)])
        terms, window_loss = self.losses(batch)
        self.priority[pick] = window_loss.cpu()
        self.opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        self.opt.step()
        m = ema_momentum(self.step, cfg.steps, 0.99, 1.0)
        ema_toward(self.target_memory, self.model.memory, m)
        ema_toward(self.target_predictor, self.model.predictor, m)
        self.step += 1
        return {k: float(v.detach()) for k, v in terms.items()}

    @torch.no_grad()
    def held_out(self) -> dict[str, float]:
        """Held-out loss terms over the validation windows."""
        self.model.eval()
        starts = self.data.val_starts(self.cfg.window, limit=256)
        terms, _ = self.losses(self.windows(starts))
        return {k: round(float(v), 5) for k, v in terms.items()}

    def run(self) -> dict:
        cfg = self.cfg
        t0 = time.perf_counter()
        before = self.held_out()
        bar = tqdm(range(cfg.steps), desc="memory", disable=None if cfg.progress else True)
        for _ in bar:
            terms = self.train_step()
            if self.step % 50 == 0:
                bar.set_postfix({k: f"{v:.3g}" for k, v in terms.items() if k != "total"})
        figures = {
            "held_out_before": before,
            "held_out_after": self.held_out(),
            "steps": cfg.steps,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        info = {
            k: v
            for k, v in self.base_config.items()
            if k in ("scene", "obs", "normalisation", "split", "device")
        }
        info.update(
            step=self.step,
            grown_from=str(cfg.base),
            memory_training=figures,
            made_by=made_by(cfg),
        )
        half = self.base_config.get("weights_dtype") == "float16"
        save_checkpoint(self.model, Path(cfg.out), info, half=half)
        return figures


def made_by(cfg: MemoryConfig) -> str:
    """The command that makes this model again: every setting that is not the default."""
    rest = changed_flags(cfg, skip=("base", "data", "out", "device", "progress"))
    return " ".join([f"./lab memory --base {cfg.base} --data {cfg.data} --out {cfg.out}", *rest])


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse_config(MemoryConfig, argv, "lab memory", __doc__.split("\n\n")[0])
    try:
        figures = MemoryTrainer(cfg).run()
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{cfg.out}: {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
