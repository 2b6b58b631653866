"""The training objective a model was made with (``ModelConfig.objective``): the
JEPA's latent prediction (``worldmodels.loss``) or, as the contrast Y. LeCun's talk
draws (docs/design.md), a generative model's pixel error (``worldmodels.generative``).

One function picks between them, so neither objective's module imports the other.
"""

from __future__ import annotations

import torch

from worldmodels import generative
from worldmodels.loss import LossConfig, jepa_losses
from worldmodels.model import WorldModel


def losses(
    model: WorldModel, batch: dict[str, torch.Tensor], cfg: LossConfig
) -> dict[str, torch.Tensor]:
    """Every term of the model's own objective by name, plus ``total`` (their weighted
    sum). ``batch`` as ``WindowData.windows`` gives it (``worldmodels.loss``)."""
    if model.cfg.objective == "generative":
        return generative.losses(model, batch, cfg)
    return jepa_losses(model, batch, cfg)
