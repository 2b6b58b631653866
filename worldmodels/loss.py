"""The training objective: open-loop latent prediction, VICReg, probes, decoder.

One call computes every term on a batch of windows ``(obs_0 .. obs_H,
actions_0 .. actions_H-1, signals_0 .. signals_H)`` and returns them by name;
the total is their weighted sum, and the breakdown travels with it.

* ``pred``: multi-step open-loop prediction error. From ``s_0 =
  enc(obs_0)`` the predictor rolls out H steps on the real actions; each
  imagined ``s_t`` is compared with the EMA target encoder's embedding of
  ``obs_t`` (no gradient), as in I-JEPA's target branch. Training on the
  open-loop rollout, not only one step, is what keeps 16-step imagination
  usable for planning (PLDM, Sobal et al. 2025; DINO-WM, Zhou et al. 2024).
* ``var`` and ``cov``: VICReg (Bardes, Ponce and LeCun 2022) on the online
  latents, real and imagined: a hinge keeping each latent dimension's std
  above 1, and the squared off-diagonal covariance, so the latent cannot
  collapse to a point or a line.
* ``probe`` and ``probe_imagined``: each signal's probe, on detached real
  and imagined latents, against the real signal (normalised). Detached: the
  probes read the representation, they do not shape it.
* ``decoder``: pixels from detached latents, display only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from worldmodels.model import WorldModel


@dataclass
class LossConfig:
    """Weights and switches of the objective; saved with each run."""

    horizon: int = 8  # H of the open-loop rollout in the loss
    pred_weight: float = 1.0
    var_weight: float = 1.0  # VICReg variance hinge; 0 switches it off
    cov_weight: float = 0.04  # VICReg covariance (sum of squared off-diagonals / D)
    ema: bool = True  # False: the target is the online encoder itself, with gradient (collapses)
    ema_start: float = 0.99  # target momentum at step 0 ...
    ema_end: float = 1.0  # ... rising to this by the last step (cosine schedule, BYOL)
    probe_weight: float = 1.0
    decoder_weight: float = 1.0
    decoder_batch: int = 16  # frames per step for the decoder: it is display only
    # Online-encode every frame of a window (VICReg and probes then see every
    # real latent). Encoding only the first frame is cheaper for pixels but
    # let the online and EMA spaces drift apart and collapsed within 600
    # steps on Reach pixels (effective rank 0), where encoding all frames at
    # half the batch reached h1 nRMSE 0.59 and rank 23 in the same 170 s.
    encode_all: bool = True


def ema_momentum(step: int, total: int, start: float, end: float) -> float:
    """Cosine schedule from ``start`` to ``end`` over ``total`` steps (a pure function)."""
    frac = min(max(step / max(total, 1), 0.0), 1.0)
    return end - (end - start) * (math.cos(math.pi * frac) + 1) / 2


@torch.no_grad()
def ema_update(model: WorldModel, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * online, in place."""
    ema_toward(model.target_encoder, model.encoder, momentum)


@torch.no_grad()
def ema_toward(target: torch.nn.Module, online: torch.nn.Module, momentum: float) -> None:
    """Each parameter of ``target`` <- momentum * itself + (1 - momentum) * ``online``'s."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.lerp_(o, 1.0 - momentum)


def vicreg_terms(e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Variance hinge and covariance penalty of embeddings e (N, D)."""
    N, D = e.shape
    std = torch.sqrt(e.var(dim=0) + 1e-4)  # (D,)
    var = F.relu(1.0 - std).mean()
    ec = e - e.mean(dim=0)
    cov = ec.T @ ec / (N - 1)  # (D, D)
    off = cov - torch.diag(torch.diag(cov))
    return var, off.pow(2).sum() / D


def jepa_losses(
    model: WorldModel, batch: dict[str, torch.Tensor], cfg: LossConfig
) -> dict[str, torch.Tensor]:
    """The JEPA's terms by name, plus ``total`` (their weighted sum)
    (``worldmodels.objective.losses`` picks this or the generative objective).

    batch (``WindowData.windows``): ``obs`` (B, H+1, ...) the model's input
    kind, ``last_action`` (B, H+1, A) the action before each observation,
    ``actions`` (B, H, A), ``signals`` (B, H+1, n) for the probes, optionally
    ``pixels`` (B, H+1, 64, 64, 3) uint8 for the decoder.
    """
    obs, actions = batch["obs"], batch["actions"]
    B, H1 = obs.shape[:2]
    H = H1 - 1
    if model.cfg.obs == "state":
        obs = obs.float()
    future = obs[:, 1:].flatten(0, 1)  # (B*H, ...)
    last = batch["last_action"]  # (B, H+1, A); a state encoder ignores it
    last_future = last[:, 1:].flatten(0, 1)  # (B*H, A)
    state = batch["state"]  # (B, H+1, S): a pixel encoder with proprio reads the robot's part
    state_future = state[:, 1:].flatten(0, 1)

    # 1. online embeddings of every observation (or, if so configured, of the
    #    first only: cheaper for pixels, but see LossConfig.encode_all)
    encode_all = cfg.encode_all
    if encode_all:
        real = model.encoder(obs.flatten(0, 1), last.flatten(0, 1), state.flatten(0, 1))
        real = real.view(B, H1, -1)  # (B, H+1, D)
    else:
        real = model.encoder(obs[:, 0], last[:, 0], state[:, 0])[:, None]  # (B, 1, D)
    s0 = real[:, 0]

    # 2. targets: the EMA encoder's embeddings of obs_1..obs_H, without
    #    gradient (or, ablated, the online encoder itself with gradient:
    #    nothing then stops a collapse)
    if not cfg.ema:
        z = real[:, 1:] if encode_all else model.encoder(future, last_future, state_future)
        z = z.view(B, H, -1)
    else:
        with torch.no_grad():
            z = model.target_encoder(future, last_future, state_future).view(B, H, -1)

    # 3. open-loop rollout from s_0 on the real actions
    imagined = model.rollout(s0, actions)  # (B, H, D)
    terms = {"pred": F.mse_loss(imagined, z)}

    # 4. VICReg on the online embeddings of real observations; with only s_0
    #    (pixels, small B) the imagined latents join them, for a covariance
    #    estimate over B*(H+1) rows
    spread = real if encode_all else torch.cat([real, imagined], dim=1)
    terms["var"], terms["cov"] = vicreg_terms(spread.flatten(0, 1))

    # 5. probes on detached latents (they read, they do not shape)
    probes = model.probes
    target = (batch["signals"] - probes.mean) / probes.std  # (B, H+1, n)
    n_real = real.shape[1]
    terms["probe"] = F.mse_loss(probes.normalised(real.detach()), target[:, :n_real])
    terms["probe_imagined"] = F.mse_loss(probes.normalised(imagined.detach()), target[:, 1:])

    # 6. decoder, on a few detached latents: display only
    if model.decoder is not None and "pixels" in batch:
        k = min(cfg.decoder_batch, B)
        img = batch["pixels"][:k, 0].permute(0, 3, 1, 2).float() / 255.0  # (k, 3, 64, 64)
        terms["decoder"] = decoder_loss(model.decoder(s0[:k].detach()), img)

    weights = {
        "pred": cfg.pred_weight,
        "var": cfg.var_weight,
        "cov": cfg.cov_weight,
        "probe": cfg.probe_weight,
        "probe_imagined": cfg.probe_weight,
        "decoder": cfg.decoder_weight,
    }
    terms["total"] = sum(weights[k] * v for k, v in terms.items())
    return terms


FOREGROUND_WEIGHT = 30.0  # extra weight on pixels that differ from the batch's mean frame


def decoder_loss(pred: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
    """Pixel MSE weighted towards what moves: (B, 3, 64, 64) in [0, 1] each.

    A plain MSE lets a decoder draw the empty floor (a 5-pixel disc is 0.6 %
    of the image); weighting each pixel by 1 + w * |img - mean frame of the
    batch| puts the moving objects back in the picture.
    """
    background = img.mean(dim=0, keepdim=True)
    weight = 1.0 + FOREGROUND_WEIGHT * (img - background).abs().amax(dim=1, keepdim=True)
    return (weight * (pred - img) ** 2).mean()


@torch.no_grad()
def effective_rank(z: torch.Tensor, floor: float = 1e-2) -> float:
    """exp(entropy) of the normalised singular values of centred z (N, D).

    Roy and Vetterli (2007); RankMe (Garrido et al. 2023) uses it to spot
    collapse without labels: D for a well-spread latent, 1 for a line. That
    measure ignores scale, so a latent shrinking to a point keeps a high
    rank made of noise; here directions whose std is below ``floor`` (1 % of
    the unit std VICReg holds each dimension to) count as collapsed, and a
    latent with none left has rank 0.
    """
    z = z.float()
    sv = torch.linalg.svdvals(z - z.mean(dim=0)) / max(len(z) - 1, 1) ** 0.5  # std per direction
    sv = sv[sv > floor]
    if len(sv) == 0:
        return 0.0
    p = sv / sv.sum()
    entropy = -(p * torch.log(p)).sum()
    return float(torch.exp(entropy))
