"""A latent distance that means steps to go, learned from observation alone.

    ./lab distance --checkpoint pretrained/reach-state --data data/reach

Planning to a goal *observation* needs a cost that falls as the agent gets
closer, read off latents alone: no probe, no signal label. The plain latent
distance ``|s - s_goal|`` is not that (Reach from state: 1 episode of 10 reached
the goal with it, against 10 of 10 on the probed x-y). This module learns an
embedding ``phi`` of the frozen world model's latents whose Euclidean distance
is the number of steps between two states, from the exploration data's own
time steps, as quasimetric RL does (QRL, Wang et al. 2023), in its symmetric
form (the agent's own moves can be undone; Kitchen's person, who moves on his
own, makes its head the least sure of them, and it is not measured):

* one step apart is at most one apart: ``|phi(s_t) - phi(s_t+1)| <= 1`` on
  every transition in the data (a squared-excess penalty, its weight raised by
  dual ascent until the constraint holds to ``slack``);
* any two states are pushed as far apart as that allows (``softplus(C - d)``
  on random pairs of the data, C larger than any trip).

The largest distance that never grows by more than one a step is the
shortest path in steps: "steps to go". Random exploration never has to
reach anything; the distance is read off how far it did get in each step.

The head trains beside the frozen world model (its encoder and predictor are
untouched, so ``latent_identity`` and the policies distilled for it still
hold) and is saved into the checkpoint (``ModelConfig.distance_dim``; older
checkpoints have none and load as before). The agent's latent task term then
reads ``WorldModel.goal_distance``. ``benchmarks/label_free.py`` measures it.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn import functional as F

from common.config import parse_config
from common.device import choose_device
from common.errors import LabError
from worldmodels.checkpoint import load_checkpoint, resave_checkpoint
from worldmodels.data import WindowData
from worldmodels.model import DistanceHead, ModelConfig, WorldModel

ENCODE_BATCH = 1024  # rows encoded at a time


@dataclass
class DistanceConfig:
    """./lab distance: the steps-to-go head, trained beside a frozen world model."""

    checkpoint: str = field(default="", metadata={"help": "world model folder", "required": True})
    data: str = field(default="", metadata={"help": "exploration data folder", "required": True})
    out: str = field(default="", metadata={"help": "save here (default: into the checkpoint)"})
    dim: int = field(default=32, metadata={"help": "embedding size"})
    kind: str = field(
        default="metric",
        metadata={"help": "metric (symmetric) or quasi (IQE: from s to g need not be back)"},
    )
    steps: int = field(default=4000, metadata={"help": "training steps"})
    batch: int = field(default=1024, metadata={"help": "transitions and random pairs a step"})
    lr: float = field(default=1e-3, metadata={"help": "Adam's step"})
    reach: float = field(default=100.0, metadata={"help": "C: pairs are pushed apart up to it"})
    slack: float = field(default=0.01, metadata={"help": "allowed mean squared step excess"})
    seed: int = field(default=0, metadata={"help": "sampling and initial weights"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})


def with_head(model: WorldModel, dim: int, kind: str = "metric") -> WorldModel:
    """``model`` with a fresh distance head of ``dim`` and ``kind`` (its other weights
    shared); 0: the model without one (the plain latent distance)."""
    cfg = ModelConfig.from_dict({**model.cfg.to_dict(), "distance_dim": dim, "distance_kind": kind})
    out = WorldModel(cfg).to(model.device)
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("distance.")}
    missing, unexpected = out.load_state_dict(own, strict=False)
    assert not unexpected and all(k.startswith("distance.") for k in missing)
    out.probe_rmse, out.probe_conformal = model.probe_rmse, model.probe_conformal
    return out.eval()


def encode_rows(model: WorldModel, data) -> torch.Tensor:
    """Every row of ``data`` (a ``WindowData``) as a latent (N, D), without gradients."""
    rows = torch.arange(len(data.state), device=data.device)
    with torch.no_grad():
        return torch.cat([model.encode(data.inputs(r)) for r in rows.split(ENCODE_BATCH)])


def transitions(episodes) -> torch.Tensor:
    """Rows r whose next row r + 1 is the next step of the same episode."""
    return torch.cat([torch.arange(s, s + n - 1) for s, n in episodes])


def pair_distance(head: DistanceHead, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Latents -> the head's steps from ``a`` to ``b``."""
    return head.between(head(a), head(b))


def train_head(
    head: DistanceHead,
    latents: torch.Tensor,
    steps_from: torch.Tensor,
    cfg: DistanceConfig,
    progress=None,
) -> dict:
    """Fit ``head`` on ``latents`` (N, D) with transitions ``steps_from`` -> +1 (module
    docstring); the last step's figures."""
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    opt = torch.optim.Adam(head.parameters(), lr=cfg.lr)
    lam = 1.0  # the constraint's weight, raised while it is broken
    n, device = len(latents), latents.device
    figures: dict = {}
    for step in range(cfg.steps):
        t = steps_from[torch.randint(len(steps_from), (cfg.batch,), generator=gen)].to(device)
        a, b = (torch.randint(n, (cfg.batch,), generator=gen).to(device) for _ in range(2))
        d_step = pair_distance(head, latents[t], latents[t + 1])
        d_pair = pair_distance(head, latents[a], latents[b])
        excess = F.relu(d_step - 1.0).square().mean()
        spread = F.softplus(cfg.reach - d_pair).mean()
        loss = spread + lam * excess
        opt.zero_grad()
        loss.backward()
        opt.step()
        lam = max(0.0, lam + 10.0 * (excess.item() - cfg.slack))  # dual ascent
        if not math.isfinite(loss.item()):
            raise LabError(f"the distance head diverged at step {step} (loss {float(loss)})")
        if step % 50 == 0 or step == cfg.steps - 1:
            figures = {
                "step": step + 1,
                "step_distance": round(d_step.mean().item(), 3),
                "pair_distance": round(d_pair.mean().item(), 2),
                "excess": round(excess.item(), 4),
                "weight": round(lam, 2),
            }
            if progress is not None:
                progress(step + 1, cfg.steps, figures)
    return figures


def train_distance(cfg: DistanceConfig, progress=None) -> tuple[Path, dict]:
    """Train the head for ``cfg.checkpoint`` on ``cfg.data`` and save; (folder, figures)."""
    device = choose_device(cfg.device)
    model, config = load_checkpoint(cfg.checkpoint, device)
    if cfg.dim < 1 or cfg.steps < 1 or cfg.batch < 2:
        raise LabError("--dim, --steps and --batch must be positive (batch at least 2)")
    data = WindowData(
        cfg.data,
        model.cfg.obs,
        device,
        horizon=1,
        val_fraction=0.0,
        pixels=model.cfg.obs == "pixels",
        frames=model.cfg.frames,
    )
    if data.scene != config.get("scene"):
        raise LabError(f"{cfg.data} is {data.scene} data; the model is {config.get('scene')}'s")
    torch.manual_seed(cfg.seed)
    model = with_head(model, cfg.dim, cfg.kind)
    latents = encode_rows(model, data)
    t0 = time.perf_counter()
    figures = train_head(model.distance, latents, transitions(data.episodes), cfg, progress)
    model.eval()
    figures["seconds"] = round(time.perf_counter() - t0, 1)
    record = {"data": str(cfg.data), "steps": cfg.steps, "kind": cfg.kind, **figures}
    folder = resave_checkpoint(model, cfg.out or cfg.checkpoint, config, distance=record)
    return Path(folder), record


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    cfg = parse_config(DistanceConfig, argv, "lab distance", __doc__.split("\n\n")[0])
    bar = tqdm(total=cfg.steps, desc="distance head", disable=None if cfg.progress else True)

    def tick(done: int, total: int, figures: dict) -> None:
        bar.update(done - bar.n)
        bar.set_postfix(figures)

    try:
        folder, record = train_distance(cfg, tick)
    except LabError as e:
        print(f"lab distance: {e}", file=sys.stderr)
        return 2
    finally:
        bar.close()
    print(json.dumps(record))
    print(f"saved the distance head into {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
