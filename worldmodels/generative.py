"""A generative world model beside the JEPA: it predicts the next frames in pixels.

The first claim of Y. LeCun's talk (and of "A Path Towards Autonomous Machine
Intelligence", 2022; docs/design.md) is that a world model should predict in a space of
representations, not in pixels: where the future is uncertain (a person who
may turn left or right), a model trained on pixel error predicts the average
of the possible frames, a blur, and spends its capacity on details that do
not matter for acting. To show it, this model is trained on the same data
with the same parts as the pixel JEPA (``worldmodels.model``: the same
encoder, predictor, probes and decoder shapes) and only the objective
changed:

* JEPA: the imagined latents are compared with the EMA encoder's embeddings
  of the real next frames (``worldmodels.loss``); the decoder is display
  only, trained on detached latents.
* generative (``ModelConfig.objective = "generative"``): every imagined
  latent is decoded and compared with the real next frame in pixels
  (``decoder_loss``, the same weighted pixel error), the decoder trained
  through the predictor and encoder. Nothing else shapes the latent; the
  reconstruction keeps it from collapsing, so there is no EMA target and no
  VICReg.

It is a ``WorldModel`` like the JEPA, so it offers the same verbs
(``encode``, ``rollout``, ``probe`` over its own latent, ``decode``), and the
planners, evaluation and checkpoints take it unchanged.

Also here: ``sharpness``, the image-gradient energy the lesson compares.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from worldmodels.loss import LossConfig, decoder_loss
from worldmodels.model import WorldModel


def losses(
    model: WorldModel, batch: dict[str, torch.Tensor], cfg: LossConfig
) -> dict[str, torch.Tensor]:
    """Every term of the generative objective by name, plus ``total``.

    ``batch`` as ``worldmodels.objective.losses`` takes it, with ``pixels`` (B, H+1,
    64, 64, 3): the current frame of every observation in the window.
    """
    obs, actions, last = batch["obs"], batch["actions"], batch["last_action"]
    B, H1 = obs.shape[:2]
    state = batch["state"].flatten(0, 1)  # a pixel encoder with proprio reads the robot's part
    real = model.encoder(obs.flatten(0, 1), last.flatten(0, 1), state).view(B, H1, -1)
    imagined = model.rollout(real[:, 0], actions)  # (B, H, D)

    # Pixels from the latent of frame 0 (reconstruction) and of every imagined step
    # (prediction), each against the real frame: the whole model trains on pixel error.
    latents = torch.cat([real[:, :1], imagined], dim=1)  # (B, H+1, D)
    frames = batch["pixels"].flatten(0, 1).permute(0, 3, 1, 2).float() / 255.0  # (B*(H+1), 3, ..)
    pred = model.decoder(latents.flatten(0, 1))  # (B*(H+1), 3, 64, 64)
    terms = {"pixels": decoder_loss(pred, frames)}

    probes = model.probes  # read, on detached latents, as in the JEPA
    target = (batch["signals"] - probes.mean) / probes.std  # (B, H+1, n)
    terms["probe"] = F.mse_loss(probes.normalised(real.detach()), target)
    terms["probe_imagined"] = F.mse_loss(probes.normalised(imagined.detach()), target[:, 1:])
    terms["total"] = cfg.pred_weight * terms["pixels"] + cfg.probe_weight * (
        terms["probe"] + terms["probe_imagined"]
    )
    return terms


def sharpness(images: torch.Tensor) -> torch.Tensor:
    """Image-gradient energy: mean squared difference of neighbouring pixels, per image.

    images: uint8 or float (..., 64, 64, 3) -> (...). A blurred prediction has
    less of it than the real frame; the lesson reports predicted / real.
    """
    x = images.float() / (255.0 if images.dtype == torch.uint8 else 1.0)
    dx = (x[..., :, 1:, :] - x[..., :, :-1, :]).pow(2).mean(dim=(-3, -2, -1))
    dy = (x[..., 1:, :, :] - x[..., :-1, :, :]).pow(2).mean(dim=(-3, -2, -1))
    return dx + dy
